package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/planner"
)

func (a *app) applyCmd() *cobra.Command {
	var (
		f        engineFlags
		planFile string
	)
	cmd := &cobra.Command{
		Use:   "apply",
		Short: "Plan and execute once (for CI)",
		Long: `Apply is one reconcile: plan, then quantize, gate, push and apply the objects,
and exit. It exits 1 if anything failed.

With -plan FILE (saved by gantry plan -out) it executes only if the world and
the specs still give that plan: the observed state must have the same digest
and the plan the same actions. Otherwise nothing runs and it exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			e, _, err := a.engine(ctx, &f)
			if err != nil {
				return err
			}
			if planFile != "" {
				fh, err := os.Open(planFile)
				if err != nil {
					return fmt.Errorf("-plan: %w", err)
				}
				p, err := planner.ReadJSON(fh)
				fh.Close()
				if err != nil {
					return err
				}
				e.Expect = p
			}
			return a.reconcileOnce(ctx, e)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&planFile, "plan", "", "execute this saved plan (from gantry plan -out) only if it still holds")
	return cmd
}
