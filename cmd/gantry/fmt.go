package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/spec"
)

func (a *app) fmtCmd() *cobra.Command {
	var check, diff bool
	cmd := &cobra.Command{
		Use:   "fmt [PATH]",
		Short: "Rewrite the specs in canonical format",
		Long: `Fmt rewrites every *.hcl file below PATH (default .) in canonical format, as
terraform fmt does, and lists the files it changed. Comments are kept.

With -check nothing is written: the files that need formatting are listed and
the exit code is 3 if there are any. With -diff the changes are shown.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := "."
			if len(args) == 1 {
				path = args[0]
			}
			results, diags, err := spec.FormatFiles(cmd.Context(), path, !check)
			a.printDiags(nil, diags)
			if err != nil {
				return err
			}
			changed := 0
			for _, r := range results {
				if !r.Changed() {
					continue
				}
				changed++
				fmt.Fprintln(a.stdout, r.Path)
				if diff {
					fmt.Fprint(a.stdout, spec.UnifiedDiff(filepath.ToSlash(r.Path), r.Original, r.Formatted))
				}
			}
			if diags.HasErrors() {
				return exitError{1}
			}
			if check && changed > 0 {
				return exitError{3}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "only check: exit 3 when a file needs formatting")
	cmd.Flags().BoolVar(&diff, "diff", false, "show the changes as a unified diff")
	return cmd
}
