package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func (a *app) validateCmd() *cobra.Command {
	var src sourceFlags
	cmd := &cobra.Command{
		Use:   "validate [PATH|GIT-URL]",
		Short: "Check the specs and print every problem",
		Long: `Validate loads every *.hcl file, evaluates variables and locals, and checks the
whole configuration. It prints each problem with its file:line:col and the
offending source line, and exits 1 if there is any error.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "."
			if len(args) == 1 {
				path = args[0]
			}
			cfg, cleanup, err := a.load(cmd.Context(), path, src)
			defer cleanup()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Success! The configuration is valid: %d releases, %d node pools, %d nodes.\n",
				len(cfg.Releases), len(cfg.Pools), len(cfg.Nodes))
			return nil
		},
	}
	cmd.Flags().StringVar(&src.ref, "ref", "", "branch, tag or commit to check out (Git URLs only)")
	cmd.Flags().StringArrayVar(&src.vars, "var", nil, "set a variable, NAME=VALUE (repeatable)")
	return cmd
}
