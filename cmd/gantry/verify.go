package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/registry"
)

func (a *app) verifyCmd() *cobra.Command {
	var (
		key, layout, state string
		insecure           bool
	)
	cmd := &cobra.Command{
		Use:   "verify IMAGE",
		Short: "Print a model image's provenance and check its signatures",
		Long: `Verify prints the attestation Gantry attached to a model image (IMAGE is
repo:tag or repo@sha256:...): the in-toto statement as indented JSON, then a
summary: source model digest, adapters, quantize parameters, Git revision
and gate results.

With --key (a PEM public key, ECDSA P-256 or Ed25519) it also checks the
image's cosign signature (the sha256-<hex>.sig tag) and the attestation's
DSSE envelope (sha256-<hex>.att) with that key, as cosign verify --key and
cosign verify-attestation --key do, and exits 1 unless both verify.

Images of the local OCI layout (gantry.local/...) are read from
<state-dir>/oci, or from --layout DIR; any other from its registry.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			image := args[0]
			r, err := name.ParseReference(image, name.WeakValidation)
			if err != nil {
				return fmt.Errorf("verify: image %q: %w", image, err)
			}
			var src interface {
				registry.Store
				registry.Source
			}
			switch {
			case cmd.Flags().Changed("layout"):
				src = registry.NewLayout(layout)
			case cmd.Flags().Changed("state-dir") || r.Context().RegistryStr() == "gantry.local":
				src = registry.NewLayout(filepath.Join(state, "oci"))
			default:
				src = registry.NewRemote(registry.Options{Insecure: insecure})
			}
			digest := ""
			if d, ok := r.(name.Digest); ok {
				digest = d.DigestStr()
			} else {
				d, ok, err := src.Has(ctx, image)
				if err != nil {
					return fmt.Errorf("verify: %w", err)
				}
				if !ok {
					return fmt.Errorf("verify: %s: %w", image, registry.ErrNotFound)
				}
				digest = d
			}
			repo := r.Context().Name()
			fmt.Fprintf(a.stdout, "image: %s@%s\n", repo, digest)
			st, signed, readErr := registry.ReadAttestation(ctx, src, image, digest)
			if readErr != nil && !errors.Is(readErr, registry.ErrNoAttestation) {
				return fmt.Errorf("verify: %w", readErr)
			}
			if st != nil {
				var buf bytes.Buffer
				if err := json.Indent(&buf, st.Raw, "", "  "); err != nil {
					buf.Write(st.Raw)
				}
				fmt.Fprintf(a.stdout, "\nstatement (%s):\n%s\n\n", map[bool]string{true: "DSSE envelope", false: "unsigned"}[signed], buf.String())
				printSummary(a.stdout, st)
			} else {
				fmt.Fprintf(a.stdout, "attestation: none\n")
			}
			if key == "" {
				return nil
			}
			v, err := registry.LoadVerifier(key)
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			failed := false
			if err := registry.VerifySignature(ctx, src, image, digest, v); err != nil {
				fmt.Fprintf(a.stdout, "signature: FAILED: %v\n", err)
				failed = true
			} else {
				fmt.Fprintf(a.stdout, "signature: verified with %s\n", key)
			}
			if _, err := registry.VerifyAttestation(ctx, src, image, digest, v); err != nil {
				fmt.Fprintf(a.stdout, "attestation: FAILED: %v\n", err)
				failed = true
			} else {
				fmt.Fprintf(a.stdout, "attestation: verified with %s\n", key)
			}
			if failed {
				return exitError{1}
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&key, "key", "", "PEM public key to verify the signature and the attestation with")
	fl.BoolVar(&insecure, "registry-insecure", false, "allow plain HTTP to registries other than localhost")
	fl.StringVar(&layout, "layout", "", "read the image from this OCI layout directory")
	fl.StringVar(&state, "state-dir", ".gantry", "Gantry's own files; the local layout is <state-dir>/oci")
	return cmd
}

// printSummary prints the statement's provenance for a person.
func printSummary(w io.Writer, st *registry.Statement) {
	p, err := reconcile.ParseProvenance(st)
	if err != nil {
		fmt.Fprintf(w, "summary: not Gantry's provenance: %v\n", err)
		return
	}
	ext, in := p.BuildDefinition.ExternalParameters, p.BuildDefinition.InternalParameters
	fmt.Fprintf(w, "release:   %s\n", ext.Release)
	fmt.Fprintf(w, "source:    %s %s\n", ext.Model.Source, verifyOrNone(ext.Model.Digest))
	for _, a := range ext.Adapters {
		fmt.Fprintf(w, "adapter:   %s %s scale %g\n", a.Source, verifyOrNone(a.Digest), a.Scale)
	}
	q := ext.Quantize.Method
	if ext.Quantize.GroupSize != 0 {
		q += fmt.Sprintf(" group_size=%d", ext.Quantize.GroupSize)
	}
	if len(ext.Quantize.Skip) > 0 {
		q += " skip=" + strings.Join(ext.Quantize.Skip, ",")
	}
	fmt.Fprintf(w, "quantize:  %s (%s)\n", q, in.QuantizerVersion)
	if in.FuserVersion != "" {
		fmt.Fprintf(w, "fuser:     %s\n", in.FuserVersion)
	}
	fmt.Fprintf(w, "revision:  %s\n", verifyOrNone(ext.Revision))
	fmt.Fprintf(w, "spec hash: %s\n", ext.SpecHash)
	g := in.Gate
	if g == nil {
		fmt.Fprintf(w, "gate:      none\n")
		return
	}
	if e := g.WeightError; e != nil {
		fmt.Fprintf(w, "gate:      weight error rel RMSE %s, max abs %s, cosine %s over %d params\n", num(e.RelRMSE), num(e.MaxAbs), num(e.Cosine), e.Params)
	}
	for _, c := range g.Evals {
		status := "ok"
		switch {
		case c.Skipped != "":
			status = "skipped: " + c.Skipped
		case c.Missing:
			status = "FAILED: missing"
		case !c.OK:
			status = "FAILED"
		}
		fmt.Fprintf(w, "eval:      %s %s %s %s: %s (%s)\n", c.Eval, c.Metric, c.Kind, num(c.Bound), num(c.Value), status)
	}
	fmt.Fprintf(w, "gate passed: %v\n", g.Passed)
}

func verifyOrNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func num(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.6g", *p)
}
