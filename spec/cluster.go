package spec

import (
	"slices"

	"github.com/hashicorp/hcl/v2"
)

// Cluster is one Kubernetes cluster of a fleet: a cluster block. Without
// any cluster block Gantry drives one target, as the command line or the
// gantry block's target says.
//
// Credentials never live in the specs: Kubeconfig is the path of a
// kubeconfig file on the daemon's machine (or mounted into its pod), and
// its contents are read only when the cluster is reached.
type Cluster struct {
	Name string `hcl:"name,label" json:"name"`
	// Kubeconfig is a kubeconfig file's path and Context a context in
	// it ("" = its current context). InCluster reaches the cluster the
	// daemon's pod runs in, by its service account; exactly one of
	// Kubeconfig and InCluster is set.
	Kubeconfig string `hcl:"kubeconfig,optional" json:"kubeconfig,omitempty"`
	Context    string `hcl:"context,optional" json:"context,omitempty"`
	InCluster  bool   `hcl:"in_cluster,optional" json:"in_cluster,omitempty"`
	// Weight scales how much load the cluster's nodes take in a release's
	// placement across clusters (multiplying their pools' weights);
	// default 1.
	Weight *float64 `hcl:"weight,optional" json:"weight,omitempty"`
	// Labels are free-form (region, tier, …); a release's
	// cluster_selector and nothing else reads them.
	Labels map[string]string `hcl:"labels,optional" json:"labels,omitempty"`
	// Namespace the cluster's objects go to; default the gantry block's.
	Namespace string `hcl:"namespace,optional" json:"namespace,omitempty"`
	// RegistryMirror, if set, is a repository prefix (like the gantry
	// block's registry) that the cluster pulls model images from: Gantry
	// copies each model image there by digest, and the cluster's pods
	// reference the mirror.
	RegistryMirror string `hcl:"registry_mirror,optional" json:"registry_mirror,omitempty"`

	DefRange hcl.Range `hcl:",def_range" json:"-"`
}

// WeightOrDefault is Weight, 1 when unset.
func (c *Cluster) WeightOrDefault() float64 {
	if c.Weight == nil {
		return 1
	}
	return *c.Weight
}

// Cluster returns the cluster block with the given name.
func (c *Config) Cluster(name string) (*Cluster, bool) {
	for i := range c.Clusters {
		if c.Clusters[i].Name == name {
			return &c.Clusters[i], true
		}
	}
	return nil, false
}

// Fleet reports whether the specs name clusters: whether Gantry drives a
// fleet rather than one target.
func (c *Config) Fleet() bool { return len(c.Clusters) > 0 }

// ClusterNamespace is where objects go in the named cluster: its
// namespace, else the gantry block's.
func (c *Config) ClusterNamespace(name string) string {
	if cl, ok := c.Cluster(name); ok && cl.Namespace != "" {
		return cl.Namespace
	}
	return c.Settings.Namespace
}

// ClustersOf returns the names of the clusters release r runs in, sorted:
// those its clusters list names, else those whose labels match every
// entry of its cluster_selector, else every cluster. nil without cluster
// blocks.
func (c *Config) ClustersOf(r *Release) []string {
	if !c.Fleet() {
		return nil
	}
	var out []string
	var named map[string]bool // r.Clusters, when long enough for a set to pay
	if len(r.Clusters) > 8 {
		named = make(map[string]bool, len(r.Clusters))
		for _, n := range r.Clusters {
			named[n] = true
		}
	}
	for i := range c.Clusters {
		cl := &c.Clusters[i]
		switch {
		case named != nil:
			if !named[cl.Name] {
				continue
			}
		case len(r.Clusters) > 0:
			if !slices.Contains(r.Clusters, cl.Name) {
				continue
			}
		case len(r.ClusterSelector) > 0:
			if !matchLabels(cl.Labels, r.ClusterSelector) {
				continue
			}
		}
		out = append(out, cl.Name)
	}
	return out
}

func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// PerCluster is how many replicas of r each of its clusters holds at
// least and at most (0: no bound): replicas_per_cluster sets both, else
// min_per_cluster and max_per_cluster.
func (r *Release) PerCluster() (lo, hi int) {
	if r.ReplicasPerCluster != nil {
		return *r.ReplicasPerCluster, *r.ReplicasPerCluster
	}
	return r.MinPerCluster, r.MaxPerCluster
}

// FleetReplicas is r's total replicas across the n clusters it runs in:
// replicas_per_cluster × n, else ReplicaCount.
func (r *Release) FleetReplicas(n int) int {
	if r.ReplicasPerCluster != nil {
		return *r.ReplicasPerCluster * n
	}
	return r.ReplicaCount()
}
