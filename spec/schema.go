package spec

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Config is a whole config repository after loading and validation.
type Config struct {
	// Root is the directory the repository was loaded from.
	Root string `json:"-"`
	// Revision is the Git commit the files came from ("" for a plain
	// directory). The source sets it; Load leaves it empty.
	Revision string `json:"-"`
	// Uncommitted is set by the source when the working copy has changes
	// below Root that Revision does not hold.
	Uncommitted bool       `json:"-"`
	Settings    Settings   `json:"settings"`
	Pools       []NodePool `json:"node_pools"` // sorted by name
	Nodes       []Node     `json:"nodes"`      // sorted by name, then cluster
	Releases    []Release  `json:"releases"`   // sorted by name
	// Clusters are the cluster blocks, sorted by name; none: one target.
	Clusters []Cluster `json:"clusters,omitempty"`
	// Files holds every parsed file by the name used in diagnostics, for
	// hcl.NewDiagnosticTextWriter.
	Files map[string]*hcl.File `json:"-"`
}

// Release returns the release with the given name.
func (c *Config) Release(name string) (*Release, bool) {
	for i := range c.Releases {
		if c.Releases[i].Name == name {
			return &c.Releases[i], true
		}
	}
	return nil, false
}

// Pool returns the node pool with the given name.
func (c *Config) Pool(name string) (*NodePool, bool) {
	for i := range c.Pools {
		if c.Pools[i].Name == name {
			return &c.Pools[i], true
		}
	}
	return nil, false
}

// Settings is the gantry block.
type Settings struct {
	// Namespace the Kubernetes objects go to. Default "gantry".
	Namespace string `hcl:"namespace,optional" json:"namespace"`
	// Registry is the repository prefix model images are pushed under, such
	// as "registry.example.com/models". Empty means the local OCI layout.
	Registry string `hcl:"registry,optional" json:"registry,omitempty"`
	// Target is where objects go: "kube" (the current kubeconfig) or
	// "dir:PATH". Empty lets the command line decide.
	Target    string     `hcl:"target,optional" json:"target,omitempty"`
	WriteBack *WriteBack `hcl:"write_back,block" json:"write_back,omitempty"`
	// LeaseCluster names the cluster block whose API holds the leader
	// election Lease of a fleet's daemon; "" is the cluster the daemon
	// runs in (or the one its kubeconfig names).
	LeaseCluster string `hcl:"lease_cluster,optional" json:"lease_cluster,omitempty"`
	// SigningKeyFile is a PEM private key (ECDSA P-256 or Ed25519, not
	// encrypted) on the daemon's file system, never in Git: every model
	// image and its attestation are signed with it in cosign's key-based
	// format.
	SigningKeyFile string `hcl:"signing_key_file,optional" json:"signing_key_file,omitempty"`
	// VerifyKeyFile is a PEM public key on the daemon's file system:
	// Gantry applies only model images (and pulls only oci:// sources)
	// whose cosign signature verifies with it.
	VerifyKeyFile string `hcl:"verify_key_file,optional" json:"verify_key_file,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// WriteBack says how Gantry commits its own decisions back to Git.
type WriteBack struct {
	Mode        string `hcl:"mode,optional" json:"mode"` // "push" (default) or "branch"
	Branch      string `hcl:"branch,optional" json:"branch,omitempty"`
	AuthorName  string `hcl:"author_name,optional" json:"author_name"`
	AuthorEmail string `hcl:"author_email,optional" json:"author_email"`
	SigningKey  string `hcl:"signing_key_file,optional" json:"signing_key_file,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// NodePool groups GPU nodes by label selector.
type NodePool struct {
	Name     string            `hcl:"name,label" json:"name"`
	Selector map[string]string `hcl:"selector,optional" json:"selector,omitempty"`
	// Weight scales how much load the pool takes; default 1.
	Weight *float64 `hcl:"weight,optional" json:"weight"`
	// Reserve is GPUs held back on each node of the pool for rolling-update
	// surges, so a rollout never deadlocks on a full node.
	Reserve int `hcl:"reserve,optional" json:"reserve"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// Node is one GPU node of the static inventory used when there is no cluster.
type Node struct {
	Name         string  `hcl:"name,label" json:"name"`
	Pool         string  `hcl:"pool" json:"pool"`
	GPUs         int     `hcl:"gpus" json:"gpus"`
	GPUMemoryRaw string  `hcl:"gpu_memory" json:"gpu_memory"`
	GPUProduct   string  `hcl:"gpu_product,optional" json:"gpu_product,omitempty"`
	Connections  float64 `hcl:"connections,optional" json:"connections"`
	// Cluster is the cluster block the node belongs to (a fleet's static
	// inventory); required when there are cluster blocks.
	Cluster string `hcl:"cluster,optional" json:"cluster,omitempty"`

	// GPUMemory is GPUMemoryRaw in bytes, per GPU.
	GPUMemory int64     `json:"-"`
	DefRange  hcl.Range `hcl:",def_range" json:"-"`
}

// Release is one model served by a set of replicas.
type Release struct {
	Name      string     `hcl:"name,label" json:"name"`
	Model     Model      `hcl:"model,block" json:"model"`
	Quantize  *Quantize  `hcl:"quantize,block" json:"quantize,omitempty"`
	Gate      *Gate      `hcl:"gate,block" json:"gate,omitempty"`
	Runtime   Runtime    `hcl:"runtime,block" json:"runtime"`
	Replicas  *int       `hcl:"replicas,optional" json:"replicas"`
	Resources *Resources `hcl:"resources,block" json:"resources,omitempty"`
	Placement *Placement `hcl:"placement,block" json:"placement,omitempty"`
	Autoscale *Autoscale `hcl:"autoscale,block" json:"autoscale,omitempty"`
	Rollback  *Rollback  `hcl:"rollback,block" json:"rollback,omitempty"`
	Rollout   *Rollout   `hcl:"rollout,block" json:"rollout,omitempty"`

	// Clusters names the clusters the release runs in, or
	// ClusterSelector picks them by label; neither: every cluster. Both
	// apply only with cluster blocks. See Config.ClustersOf.
	Clusters        []string          `hcl:"clusters,optional" json:"clusters,omitempty"`
	ClusterSelector map[string]string `hcl:"cluster_selector,optional" json:"cluster_selector,omitempty"`
	// ReplicasPerCluster places that many replicas in each of the
	// release's clusters (instead of replicas). Else replicas is a total,
	// spread by weighted least connections over the nodes of all its
	// clusters, with at least MinPerCluster and at most MaxPerCluster (0:
	// no bound) in each.
	ReplicasPerCluster *int `hcl:"replicas_per_cluster,optional" json:"replicas_per_cluster,omitempty"`
	MinPerCluster      int  `hcl:"min_per_cluster,optional" json:"min_per_cluster,omitempty"`
	MaxPerCluster      int  `hcl:"max_per_cluster,optional" json:"max_per_cluster,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// ReplicaCount is the desired number of replicas (default 1).
func (r *Release) ReplicaCount() int {
	if r.Replicas == nil {
		return 1
	}
	return *r.Replicas
}

// Model says where the weights come from.
type Model struct {
	// Source is a path inside the repo, oci://REF or https://URL.
	Source string `hcl:"source" json:"source"`
	Format string `hcl:"format" json:"format"` // "safetensors" or "gguf"
	// Digest pins the source content, "sha256:<hex>". Required for https
	// sources; computed from the file for repo paths when absent.
	Digest string `hcl:"digest,optional" json:"digest,omitempty"`
	// Packaging is how the model reaches the pod: "modelpack" (an OCI
	// artifact mounted as an image volume, the default) or "modelcar".
	Packaging string `hcl:"packaging,optional" json:"packaging"`
	// BaseImage is the modelcar base image.
	BaseImage string `hcl:"base_image,optional" json:"base_image,omitempty"`
	// Adapters are LoRA adapters merged into the weights, in order,
	// before quantization (see Adapter).
	Adapters []Adapter `hcl:"adapter,block" json:"adapters,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// SourceKind tells the three kinds of model source apart.
type SourceKind int

const (
	SourcePath SourceKind = iota
	SourceOCI
	SourceHTTPS
)

// Kind classifies Source.
func (m *Model) Kind() SourceKind {
	switch {
	case hasPrefix(m.Source, "oci://"):
		return SourceOCI
	case hasPrefix(m.Source, "https://"), hasPrefix(m.Source, "http://"):
		return SourceHTTPS
	}
	return SourcePath
}

func hasPrefix(s, p string) bool { return len(s) >= len(p) && s[:len(p)] == p }

// Quantize says how to compress the weights.
type Quantize struct {
	Method    string   `hcl:"method" json:"method"`
	GroupSize int      `hcl:"group_size,optional" json:"group_size,omitempty"`
	Skip      []string `hcl:"skip,optional" json:"skip,omitempty"`
	// Runner is "local" (in the daemon, the default) or "job" (a
	// Kubernetes Job, for models too big for the daemon).
	Runner string `hcl:"runner,optional" json:"runner"`
	// CPU and Memory are what the quantize Job requests (runner = "job").
	CPU    string `hcl:"cpu,optional" json:"cpu,omitempty"`
	Memory string `hcl:"memory,optional" json:"memory,omitempty"`
	// Sparsity asks for pruning ("2:4"). It is refused: no serving
	// engine Gantry targets runs sparse weights any more (see
	// SparsityRefusal).
	Sparsity string `hcl:"sparsity,optional" json:"sparsity,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// Gate blocks a release whose quantization error or evaluation misses the bar.
type Gate struct {
	MaxError *float64           `hcl:"max_error,optional" json:"max_error,omitempty"`
	EvalFile string             `hcl:"eval_file,optional" json:"eval_file,omitempty"`
	Min      map[string]float64 `hcl:"min,optional" json:"min,omitempty"`
	// Evals run evaluators on the candidate build (see Eval).
	Evals []Eval `hcl:"eval,block" json:"evals,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// Runtime is the serving container.
type Runtime struct {
	Image string `hcl:"image" json:"image"`
	// Engine is the inference engine the image runs ("vllm",
	// "llama.cpp", …; see Engines). Empty: inferred from Image by
	// EngineName; an engine Gantry does not know is not checked.
	Engine string            `hcl:"engine,optional" json:"engine,omitempty"`
	Args   []string          `hcl:"args,optional" json:"args,omitempty"`
	Port   int               `hcl:"port,optional" json:"port"` // default 8000
	Env    map[string]string `hcl:"env,optional" json:"env,omitempty"`
	// SecretEnv maps an environment variable to "SECRET/KEY" of a
	// Kubernetes Secret, so that secrets never live in Git.
	SecretEnv  map[string]string `hcl:"secret_env,optional" json:"secret_env,omitempty"`
	HealthPath string            `hcl:"health_path,optional" json:"health_path"` // default "/health"

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// Resources is what one replica needs.
type Resources struct {
	GPUs         *int   `hcl:"gpus,optional" json:"gpus"`
	GPUMemoryRaw string `hcl:"gpu_memory,optional" json:"gpu_memory,omitempty"`
	CPU          string `hcl:"cpu,optional" json:"cpu,omitempty"`
	Memory       string `hcl:"memory,optional" json:"memory,omitempty"`

	// GPUMemory is GPUMemoryRaw in bytes: memory needed on each GPU.
	GPUMemory int64     `json:"-"`
	DefRange  hcl.Range `hcl:",def_range" json:"-"`
}

// GPUCount is the GPUs per replica (default 1 with a resources block, 0
// without: a release that asks for nothing gets no GPU).
func (r *Release) GPUCount() int {
	if r.Resources == nil || r.Resources.GPUs == nil {
		if r.Resources == nil {
			return 0
		}
		return 1
	}
	return *r.Resources.GPUs
}

// GPUMemory is the GPU memory needed per GPU, in bytes (0: any).
func (r *Release) GPUMemory() int64 {
	if r.Resources == nil {
		return 0
	}
	return r.Resources.GPUMemory
}

// Placement constrains where replicas may run.
type Placement struct {
	Pools      []string `hcl:"pools,optional" json:"pools,omitempty"`
	MaxPerNode int      `hcl:"max_per_node,optional" json:"max_per_node,omitempty"`
	Spread     bool     `hcl:"spread,optional" json:"spread,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// Autoscale drives replicas from a Prometheus query.
type Autoscale struct {
	Query       string  `hcl:"query" json:"query"`
	Target      float64 `hcl:"target" json:"target"`
	Min         int     `hcl:"min" json:"min"`
	Max         int     `hcl:"max" json:"max"`
	CooldownRaw string  `hcl:"cooldown,optional" json:"cooldown,omitempty"`
	// ScaleUpWindowRaw and ScaleDownWindowRaw are stabilization windows:
	// Gantry scales up only to the lowest and down only to the highest
	// replica count the query asked for during the window (defaults 0s
	// and 5m, as the Kubernetes HPA).
	ScaleUpWindowRaw   string `hcl:"scale_up_window,optional" json:"scale_up_window,omitempty"`
	ScaleDownWindowRaw string `hcl:"scale_down_window,optional" json:"scale_down_window,omitempty"`
	// Tolerance is the band around the target inside which nothing
	// changes, as a fraction (default 0.1: ±10%).
	Tolerance *float64 `hcl:"tolerance,optional" json:"tolerance,omitempty"`
	// MaxStep caps the replicas added or removed in one change (default
	// 0: max(4, current replicas), the HPA's "4 pods or 100%").
	MaxStep int `hcl:"max_step,optional" json:"max_step,omitempty"`

	Cooldown        time.Duration `json:"-"` // default 5m
	ScaleUpWindow   time.Duration `json:"-"`
	ScaleDownWindow time.Duration `json:"-"`
	DefRange        hcl.Range     `hcl:",def_range" json:"-"`
}

// ToleranceOrDefault is Tolerance, 0.1 when unset.
func (a *Autoscale) ToleranceOrDefault() float64 {
	if a.Tolerance == nil {
		return 0.1
	}
	return *a.Tolerance
}

// Rollback restores a release's previous values when a query crosses a
// threshold soon after a change.
type Rollback struct {
	Query     string  `hcl:"query" json:"query"`
	Threshold float64 `hcl:"threshold" json:"threshold"`
	WindowRaw string  `hcl:"window" json:"window"`

	Window   time.Duration `json:"-"`
	DefRange hcl.Range     `hcl:",def_range" json:"-"`
}

// Methods lists the quantize methods by model format.
var Methods = map[string][]string{
	"gguf":        {"none", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k", "q4_k_m", "q5_k_m"},
	"safetensors": {"none", "fp8", "int8", "int4"},
}
