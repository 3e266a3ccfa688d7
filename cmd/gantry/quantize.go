package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gantry-dev/gantry/compress"
	"github.com/gantry-dev/gantry/compress/quality"
	"github.com/gantry-dev/gantry/reconcile/registry"
)

func (a *app) quantizeCmd() *cobra.Command {
	var (
		in, out, typ, report string
		insecure, profile    bool
		opts                 compress.Options
	)
	cmd := &cobra.Command{
		Use:   "quantize --in PATH --out PATH --type TYPE",
		Short: "Quantize a model file (GGUF) or checkpoint (safetensors)",
		Long: `Quantize compresses a model as the release pipeline does, offline.

A GGUF input (F32, F16 or BF16) takes a llama-quantize type: q8_0, q4_0, q4_1,
q5_0, q5_1, q4_k, q5_k, q6_k, q4_k_s, q4_k_m, q5_k_s, q5_k_m. The output is byte
for byte what llama-quantize writes, with its per-tensor mixes unless --pure.

A safetensors checkpoint directory (with config.json) takes fp8, int8 or int4 and
becomes a vLLM-loadable compressed-tensors checkpoint.

It ends with the error of every quantized tensor against the original (relative
RMSE, max abs error, cosine) and a whole-model summary; --report json prints it as
JSON. The output is written atomically: a failed run leaves nothing behind. A NaN
or Inf value is an error naming the tensor and its offset, whether the tensor is
quantized or kept as is (norms, lm_head, --skip), unless --allow-nonfinite.

--profile prints, to stderr, the time each stage took summed over the threads, its
share and its throughput, and the instruction set the kernels used (the best the
CPU has; GANTRY_SIMD=scalar|sse2|avx2|avx512|avx512vbmi caps it).

For int4, --group-size takes the sizes vLLM serves: 32, 64, 128 (the default) or
-1 (one scale per output channel). A layer whose input width the group size does
not divide is an error, not silently kept dense. --skip must cover fused layers
whole: q_proj, k_proj and v_proj together, gate_proj and up_proj together.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in == "" || out == "" || typ == "" {
				return errors.New("--in, --out and --type are required")
			}
			if report != "table" && report != "json" {
				return fmt.Errorf("--report %q: want table or json", report)
			}
			opts.Type = typ
			if strings.HasPrefix(in, registry.OCIScheme) {
				local, cleanup, err := pullModel(cmd.Context(), in, insecure)
				defer cleanup()
				if err != nil {
					return err
				}
				in = local
			}
			total, err := compress.InputSize(in)
			if err != nil {
				return fmt.Errorf("quantize: %w", err)
			}
			bar := newProgressBar(cmd.Context(), a.stderr, isTerminal(a.stderr), "quantize", total)
			opts.Progress = bar.Set
			var prof compress.Profile
			if profile {
				opts.Profile = &prof
			}
			rep, err := compress.Quantize(cmd.Context(), in, out, opts)
			bar.Done(err == nil)
			if err != nil {
				return err
			}
			if profile {
				if prof.Threads == 0 {
					fmt.Fprintf(a.stderr, "profile: only GGUF quantization is profiled (simd %s)\n", compress.SIMD())
				} else if _, err := prof.WriteTo(a.stderr); err != nil {
					return err
				}
			}
			if report == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(rep)
			}
			return writeReport(a.stdout, rep, out)
		},
	}
	f := cmd.Flags()
	f.StringVar(&in, "in", "", "input: a GGUF file, a safetensors checkpoint directory, or oci://REF (a ModelPack or modelcar image)")
	f.BoolVar(&insecure, "registry-insecure", false, "allow plain HTTP to registries other than localhost")
	f.StringVar(&out, "out", "", "output file (GGUF) or directory (safetensors)")
	f.StringVar(&typ, "type", "", "target type, e.g. q4_k_m, q8_0, fp8, int4")
	f.IntVar(&opts.Threads, "threads", 0, "worker threads (default GOMAXPROCS)")
	f.BoolVar(&opts.Pure, "pure", false, "GGUF: quantize every eligible tensor to the base type (no mixes)")
	f.StringArrayVar(&opts.Skip, "skip", nil, "glob of tensor names to leave unquantized (repeatable)")
	f.IntVar(&opts.GroupSize, "group-size", 0, "int4 group size: 32, 64, 128 or -1 for channel-wise (default 128)")
	f.BoolVar(&opts.LeaveOutput, "leave-output-tensor", false, "GGUF: keep output.weight unquantized")
	f.BoolVar(&opts.AllowNonFinite, "allow-nonfinite", false, "accept NaN and Inf values (quantized or kept as is) instead of failing")
	f.StringVar(&report, "report", "table", "report format: table or json")
	f.BoolVar(&profile, "profile", false, "print where the time went (read, decode, check, quantize, dequantize, errors, write) to stderr")
	return cmd
}

func writeReport(w io.Writer, rep quality.Report, out string) error {
	bw := bufio.NewWriter(w) // the table writes cell by cell: one write, not thousands
	tw := tabwriter.NewWriter(bw, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tensor\ttype\tparams\trel RMSE\tmax abs\tcosine\t")
	row := func(t quality.Tensor) {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.5f\t%.5g\t%.6f\t\n", t.Name, t.Type, t.Params, t.RelRMSE, t.MaxAbs, t.Cosine)
	}
	for _, t := range rep.Tensors {
		row(t)
	}
	fmt.Fprintln(tw, strings.Repeat("-", 6)+"\t\t\t\t\t\t")
	row(rep.Summary)
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(bw, "\nQuantized %d tensors (%d parameters) into %s.\n", len(rep.Tensors), rep.Summary.Params, out)
	return bw.Flush()
}

// pullModel extracts an oci:// model image into a temporary directory,
// verifying every blob's digest, and returns the GGUF file or checkpoint
// directory inside it.
func pullModel(ctx context.Context, ref string, insecure bool) (string, func(), error) {
	tmp, err := os.MkdirTemp("", "gantry-pull-")
	if err != nil {
		return "", func() {}, err
	}
	cleanup := func() { os.RemoveAll(tmp) }
	dir := filepath.Join(tmp, "model")
	if err := registry.PullRef(ctx, ref, dir, registry.Options{Insecure: insecure}); err != nil {
		return "", cleanup, err
	}
	ggufs, _ := filepath.Glob(filepath.Join(dir, "*.gguf"))
	switch {
	case len(ggufs) == 1:
		return ggufs[0], cleanup, nil
	case len(ggufs) > 1:
		return "", cleanup, fmt.Errorf("%s holds %d GGUF files; want one", ref, len(ggufs))
	}
	return dir, cleanup, nil
}
