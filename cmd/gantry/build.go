package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/reconcile"
)

// jobFlags configure build Jobs (quantize { runner = "job" }).
type jobFlags struct {
	image, serviceAccount, envSecret, registrySecret string
}

func (j *jobFlags) register(fl *pflag.FlagSet) {
	def := os.Getenv("GANTRY_IMAGE")
	if def == "" {
		def = "ghcr.io/gantry-dev/gantry:" + version
	}
	fl.StringVar(&j.image, "job-image", def, "image of build Jobs (runner = \"job\"): normally the daemon's own (GANTRY_IMAGE)")
	fl.StringVar(&j.serviceAccount, "job-service-account", "", "service account of build Jobs")
	fl.StringVar(&j.envSecret, "job-env-secret", "", "Secret whose keys become build Jobs' environment (e.g. GANTRY_GIT_TOKEN)")
	fl.StringVar(&j.registrySecret, "job-registry-secret", "", "Secret with a docker config.json (key config.json) build Jobs push with")
}

func (j *jobFlags) runner(rc *rest.Config, insecure bool) (*reconcile.KubeJobs, error) {
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return nil, err
	}
	return &reconcile.KubeJobs{Client: cs, Image: j.image, ServiceAccount: j.serviceAccount,
		EnvSecret: j.envSecret, RegistrySecret: j.registrySecret, Insecure: insecure}, nil
}

func (a *app) buildCmd() *cobra.Command {
	var (
		f         engineFlags
		release   string
		candidate bool
	)
	cmd := &cobra.Command{
		Use:   "build --repo URL --ref COMMIT --release NAME",
		Short: "Quantize, gate and push one release's model (what a build Job runs)",
		Long: `Build runs one release's quantize → gate → push and prints the image digest.
It is what the Kubernetes Job runs for a release with quantize { runner = "job" },
so that quantization scales past the daemon's machine; it can also be run by hand.
An image the registry already has is not built again. A gate that blocks exits 1
with the reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if release == "" {
				return fmt.Errorf("--release is required")
			}
			if f.target == "" {
				f.target = "dir:" + f.state + "/objects" // unused: build applies nothing
			}
			e, _, err := a.engine(cmd.Context(), &f)
			if err != nil {
				return err
			}
			digest, err := e.BuildRelease(cmd.Context(), release, candidate)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, digest)
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&release, "release", "", "the release to build")
	cmd.Flags().BoolVar(&candidate, "candidate", false, "push to the candidate tag (ck-…-candidate) and leave the gate's evals to the daemon")
	return cmd
}
