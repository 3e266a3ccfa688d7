package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

// exitError carries a process exit code through cobra without printing.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

type app struct {
	stdout, stderr io.Writer
	color          bool // stdout is a terminal and colors are not disabled
	errColor       bool
	noColor        bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// run executes the CLI and returns the exit code; tests call it directly.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:           "gantry",
		Short:         "Release AI models into GPU clusters the GitOps way",
		Long:          "Gantry keeps a GPU cluster equal to a Git repository of HCL release specs:\nit quantizes models, pushes them as OCI images, places replicas on GPU nodes\nand applies the Kubernetes objects.",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRun: func(cmd *cobra.Command, _ []string) {
			_, envNoColor := os.LookupEnv("NO_COLOR")
			a.color = !a.noColor && !envNoColor && isTerminal(stdout)
			a.errColor = !a.noColor && !envNoColor && isTerminal(stderr)
			var h slog.Handler
			if isTerminal(stderr) {
				h = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
			} else {
				h = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})
			}
			slog.SetDefault(slog.New(h))
		},
	}
	root.PersistentFlags().BoolVar(&a.noColor, "no-color", false, "disable colors (also NO_COLOR)")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(a.planCmd(), a.validateCmd(), a.fmtCmd(), a.quantizeCmd(), a.runCmd(), a.applyCmd(), a.adjustCmd(), a.buildCmd(), a.gcCmd(), a.versionCmd())
	root.AddCommand(a.verifyCmd())
	root.SetArgs(terraformFlags(root, args))
	err := root.ExecuteContext(ctx)
	var ee exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		fmt.Fprintf(stderr, "Error: %s\n", err)
		return 1
	}
}

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(a.stdout, "gantry %s\n", version)
			return nil
		},
	}
}

// terraformFlags lets long flags take one dash, as Terraform's do
// (-check, -out FILE, -detailed-exitcode): any "-name" or "-name=value"
// whose name is a long flag of some command becomes "--name".
func terraformFlags(root *cobra.Command, args []string) []string {
	long := map[string]bool{}
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		c.LocalFlags().VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { long[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = a
		if a == "--" {
			copy(out[i:], args[i:])
			break
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if len(name) > 1 && long[name] {
				out[i] = "-" + a
			}
		}
	}
	return out
}
