package spec

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// The checks of a fleet: cluster blocks, the clusters of nodes and
// releases, per-cluster replicas and rollout waves. Without cluster
// blocks every fleet attribute is an error, and nothing else changes.

var (
	// registryHostRE is a registry host with an optional port.
	registryHostRE = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)*(:[0-9]+)?$`)
	// repoComponentRE is one path component of a repository, as the
	// distribution reference grammar has it.
	repoComponentRE = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*$`)
)

// kubeconfigMarkers are what a kubeconfig's contents, or a credential,
// hold and a file's path does not.
var kubeconfigMarkers = []string{
	"apiversion", "kind: config", "clusters:", "contexts:", "users:", "current-context",
	"client-key-data", "client-certificate-data", "certificate-authority-data",
	"token:", "password:", "-----begin", "auth-provider", "exec:",
}

// KubeconfigContents reports whether a kubeconfig attribute's value looks
// like the contents of a kubeconfig file or a credential rather than a
// path: it spans lines, holds a kubeconfig's keys or a PEM block, or is a
// bearer token (a JWT). Load refuses such a value, and printed
// diagnostics mask it.
func KubeconfigContents(s string) bool {
	if strings.ContainsAny(s, "\n\r") || strings.HasPrefix(s, "eyJ") {
		return true
	}
	l := strings.ToLower(s)
	return slices.ContainsFunc(kubeconfigMarkers, func(m string) bool { return strings.Contains(l, m) })
}

// validRepoPrefix reports whether s is a registry host (a name with a dot
// or a port, or localhost) followed by lowercase path components.
func validRepoPrefix(s string) bool {
	host, path, _ := strings.Cut(s, "/")
	if !registryHostRE.MatchString(host) || !(strings.ContainsAny(host, ".:") || host == "localhost") {
		return false
	}
	if path == "" {
		return !strings.HasSuffix(s, "/")
	}
	for _, c := range strings.Split(path, "/") {
		if !repoComponentRE.MatchString(c) {
			return false
		}
	}
	return len(s) <= 255
}

// clusters validates the cluster blocks and the gantry block's
// lease_cluster, and indexes the clusters by name for the checks of
// nodes and releases.
func (v *validator) clusters() {
	cfg := v.cfg
	v.clusterIdx = make(map[string]*Cluster, len(cfg.Clusters))
	inCluster := ""
	reach := map[[2]string]string{} // (kubeconfig, context) → cluster
	for i := range cfg.Clusters {
		c := &cfg.Clusters[i]
		v.clusterIdx[c.Name] = c
		v.cluster(c)
		switch {
		case c.InCluster && c.Kubeconfig == "":
			if inCluster != "" {
				v.errorf(v.attr(c.DefRange, "in_cluster"), "Cluster reached twice", "Clusters %q and %q both set in_cluster = true, and both would be the cluster the daemon runs in: one cluster block per cluster.", inCluster, c.Name)
			} else {
				inCluster = c.Name
			}
		case c.Kubeconfig != "" && !c.InCluster && !KubeconfigContents(c.Kubeconfig):
			k := [2]string{c.Kubeconfig, c.Context}
			if prev, ok := reach[k]; ok {
				v.errorf(v.attr(c.DefRange, "kubeconfig"), "Cluster reached twice", "Clusters %q and %q name the same kubeconfig file and context, so they are the same cluster: one cluster block per cluster.", prev, c.Name)
			} else {
				reach[k] = c.Name
			}
		}
	}
	s := &cfg.Settings
	switch {
	case s.LeaseCluster == "":
	case !cfg.Fleet():
		v.needsClusters(v.attr(s.DefRange, "lease_cluster"), "lease_cluster")
	case v.clusterIdx[s.LeaseCluster] == nil:
		v.unknownCluster(v.attr(s.DefRange, "lease_cluster"), "lease_cluster", s.LeaseCluster)
	}
}

func (v *validator) cluster(c *Cluster) {
	if !dnsLabelRE.MatchString(c.Name) || len(c.Name) > 63 {
		v.errorf(v.label(c.DefRange), "Invalid cluster name", "%q cannot name a cluster: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit (a node is known as CLUSTER/NODE, so no '/').", c.Name)
	}
	hasKubeconfig := c.Kubeconfig != ""
	switch {
	case hasKubeconfig && KubeconfigContents(c.Kubeconfig):
		// The value is never quoted: it may be a credential. Printed
		// diagnostics mask it in the source line too (maskSource).
		v.errorf(v.attr(c.DefRange, "kubeconfig"), "Kubeconfig contents in Git",
			"Cluster %q: kubeconfig must be the path of a kubeconfig file on the daemon's machine (such as \"/etc/gantry/%s.kubeconfig\"), but this value looks like a kubeconfig's contents or a credential. Credentials never belong in Git: remove the value from the repository and its history, rotate the credentials, and mount the kubeconfig file into the daemon instead.",
			c.Name, c.Name)
	case hasKubeconfig && c.InCluster:
		v.errorf(v.attr(c.DefRange, "in_cluster"), "Conflicting cluster access", "Cluster %q sets both kubeconfig and in_cluster = true: set exactly one, a kubeconfig file's path or in_cluster = true for the cluster the daemon runs in.", c.Name)
	case !hasKubeconfig && !c.InCluster:
		v.errorf(v.label(c.DefRange), "Missing cluster access", "Cluster %q says neither kubeconfig nor in_cluster = true: set kubeconfig = \"PATH\" (a kubeconfig file on the daemon's machine) or in_cluster = true (the cluster the daemon runs in).", c.Name)
	}
	if c.Context != "" && !hasKubeconfig {
		v.errorf(v.attr(c.DefRange, "context"), "context without kubeconfig", "Cluster %q: context names a context of the kubeconfig file, but the cluster has no kubeconfig. Set kubeconfig or remove context.", c.Name)
	}
	if w := c.Weight; w != nil && (*w <= 0 || math.IsInf(*w, 0) || math.IsNaN(*w)) {
		v.errorf(v.attr(c.DefRange, "weight"), "Invalid cluster weight", "weight must be a finite number greater than zero, got %g.", *w)
	}
	if c.Namespace != "" && (!dnsLabelRE.MatchString(c.Namespace) || len(c.Namespace) > 63) {
		v.errorf(v.attr(c.DefRange, "namespace"), "Invalid namespace", "%q is not a valid Kubernetes namespace: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit.", c.Namespace)
	}
	if m := c.RegistryMirror; m != "" && !validRepoPrefix(m) {
		got := fmt.Sprintf("; got %q", m)
		if strings.Contains(m, "@") {
			got = "; this value holds an '@', as user information does, and credentials never belong in Git"
		}
		v.errorf(v.attr(c.DefRange, "registry_mirror"), "Invalid registry_mirror", "registry_mirror must be a repository prefix such as \"mirror.eu.example.com/models\": a registry host (with a dot or a port), then lowercase path components, without scheme, tag or digest%s.", got)
	}
}

// needsClusters reports a fleet attribute of specs without cluster
// blocks.
func (v *validator) needsClusters(r hcl.Range, attr string) {
	v.errorf(r, attr+" needs cluster blocks", "%s is about the clusters of a fleet, but there is no cluster block: without one Gantry drives a single target. Add cluster blocks or remove %s.", attr, attr)
}

// unknownCluster reports a reference to a cluster block that does not
// exist, with the closest name.
func (v *validator) unknownCluster(r hcl.Range, attr, name string) {
	names := make([]string, 0, len(v.cfg.Clusters))
	for _, c := range v.cfg.Clusters {
		names = append(names, c.Name)
	}
	detail := fmt.Sprintf("%s: there is no cluster block named %q.", attr, name)
	if near := nearest(name, names); near != "" {
		detail += fmt.Sprintf(" Did you mean %q?", near)
	} else if len(names) <= 10 {
		detail += fmt.Sprintf(" Declared clusters: %s.", strings.Join(names, ", "))
	}
	v.errorf(r, "Unknown cluster", "%s", detail)
}

// nodeCluster checks a node block's cluster.
func (v *validator) nodeCluster(n *Node) {
	switch {
	case !v.cfg.Fleet():
		if n.Cluster != "" || v.hasAttr(n.DefRange, "cluster") {
			v.needsClusters(v.attr(n.DefRange, "cluster"), "cluster")
		}
	case n.Cluster == "":
		at := v.label(n.DefRange)
		if v.hasAttr(n.DefRange, "cluster") {
			at = v.attr(n.DefRange, "cluster")
		}
		v.errorf(at, "Node without cluster", "Node %q names no cluster: with cluster blocks, every node block says which cluster it is in, with cluster = \"NAME\".", n.Name)
	case v.clusterIdx[n.Cluster] == nil:
		v.unknownCluster(v.attr(n.DefRange, "cluster"), "cluster", n.Cluster)
	}
}

// releaseFleetAttrs are the release attributes that need cluster blocks.
var releaseFleetAttrs = []string{"clusters", "cluster_selector", "replicas_per_cluster", "min_per_cluster", "max_per_cluster"}

// releaseClusters checks which clusters a release runs in and how many
// replicas each holds.
func (v *validator) releaseClusters(r *Release) {
	if !v.cfg.Fleet() {
		for _, a := range releaseFleetAttrs {
			if v.hasAttr(r.DefRange, a) {
				v.needsClusters(v.attr(r.DefRange, a), a)
			}
		}
		return
	}
	known := true
	if v.hasAttr(r.DefRange, "clusters") {
		if len(r.Clusters) == 0 {
			v.errorf(v.attr(r.DefRange, "clusters"), "No clusters", "clusters = [] names no cluster, so the release would run nowhere. Name its clusters, or remove clusters to run it in every cluster.")
			known = false
		}
		seen := make(map[string]int, len(r.Clusters))
		for i, name := range r.Clusters {
			at := v.listEntry(r.DefRange, "clusters", i)
			if v.clusterIdx[name] == nil {
				v.unknownCluster(at, "clusters", name)
				known = false
			} else if prev, ok := seen[name]; ok {
				v.errorf(at, "Duplicate cluster", "clusters names %q twice (entries %d and %d).", name, prev+1, i+1)
			} else {
				seen[name] = i
			}
		}
		if v.hasAttr(r.DefRange, "cluster_selector") {
			v.errorf(v.attr(r.DefRange, "cluster_selector"), "Conflicting cluster choice", "The release sets both clusters and cluster_selector: name its clusters or select them by label, not both.")
			known = false
		}
	}
	if known && len(r.ClusterSelector) > 0 && len(r.Clusters) == 0 && len(v.cfg.ClustersOf(r)) == 0 {
		var sel []string
		for _, k := range sortedKeys(r.ClusterSelector) {
			sel = append(sel, fmt.Sprintf("%s = %q", k, r.ClusterSelector[k]))
		}
		v.errorf(v.attr(r.DefRange, "cluster_selector"), "No cluster selected", "cluster_selector { %s } matches no cluster block's labels, so the release would run nowhere.", strings.Join(sel, ", "))
		known = false
	}

	perCluster := v.hasAttr(r.DefRange, "replicas_per_cluster")
	if perCluster {
		at := v.attr(r.DefRange, "replicas_per_cluster")
		if p := r.ReplicasPerCluster; p != nil && *p < 0 {
			v.errorf(at, "Invalid replicas_per_cluster", "replicas_per_cluster cannot be negative, got %d.", *p)
		}
		for _, a := range []string{"replicas", "min_per_cluster", "max_per_cluster"} {
			if v.hasAttr(r.DefRange, a) {
				v.errorf(at, "Conflicting replicas", "replicas_per_cluster places that many replicas in each cluster, and %s does not apply with it: set replicas_per_cluster alone, or replicas (a total) with min_per_cluster and max_per_cluster.", a)
			}
		}
		if r.Autoscale != nil {
			v.errorf(at, "Autoscale with replicas_per_cluster", "autoscale edits replicas, the release's total across its clusters, but replicas_per_cluster fixes each cluster's count. Use replicas with min_per_cluster and max_per_cluster instead.")
		}
	}
	lo, hi := r.MinPerCluster, r.MaxPerCluster
	if lo < 0 {
		v.errorf(v.attr(r.DefRange, "min_per_cluster"), "Invalid min_per_cluster", "min_per_cluster cannot be negative, got %d.", lo)
	}
	if hi < 0 {
		v.errorf(v.attr(r.DefRange, "max_per_cluster"), "Invalid max_per_cluster", "max_per_cluster cannot be negative, got %d (0 means no bound).", hi)
	}
	if hi > 0 && lo > hi {
		v.errorf(v.attr(r.DefRange, "max_per_cluster"), "min_per_cluster is greater than max_per_cluster", "min_per_cluster (%d) must not exceed max_per_cluster (%d), or no cluster could hold its share.", lo, hi)
	}
	if perCluster || !known || lo < 0 || hi < 0 || (hi > 0 && lo > hi) {
		return
	}
	n := len(v.cfg.ClustersOf(r))
	total := r.ReplicaCount()
	if total >= 0 && lo*n > total {
		v.errorf(v.attr(r.DefRange, "min_per_cluster"), "Too few replicas for min_per_cluster", "min_per_cluster = %d in each of the release's %d clusters needs at least %d replicas, but replicas is %d.", lo, n, lo*n, total)
	}
	if hi > 0 && total > hi*n {
		v.errorf(v.attr(r.DefRange, "max_per_cluster"), "Too many replicas for max_per_cluster", "max_per_cluster = %d in each of the release's %d clusters holds at most %d replicas, but replicas is %d.", hi, n, hi*n, total)
	}
	if a := r.Autoscale; a != nil && a.Min <= a.Max {
		if a.Min >= 0 && lo*n > a.Min {
			v.errorf(v.attr(a.DefRange, "min"), "Autoscale min below min_per_cluster", "autoscale may scale the release down to min = %d replicas, but min_per_cluster = %d in each of its %d clusters needs at least %d.", a.Min, lo, n, lo*n)
		}
		if hi > 0 && a.Max > hi*n {
			v.errorf(v.attr(a.DefRange, "max"), "Autoscale max above max_per_cluster", "autoscale may scale the release up to max = %d replicas, but max_per_cluster = %d in each of its %d clusters holds at most %d.", a.Max, hi, n, hi*n)
		}
	}
}

// listEntry is the range of entry i of the list attribute name in the
// block defined at def, or the attribute's value when it is not a
// literal list.
func (v *validator) listEntry(def hcl.Range, name string, i int) hcl.Range {
	if b := v.syntaxBlock(def); b != nil {
		if a, ok := b.Body.Attributes[name]; ok {
			if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(tup.Exprs) {
				return tup.Exprs[i].Range()
			}
			return a.Expr.Range()
		}
	}
	return def
}

// waveEntry is the range of entry j of wave i, or the wave's range when
// it is not a literal list.
func (v *validator) waveEntry(ro *Rollout, i, j int) hcl.Range {
	wr := ro.WaveRanges[i]
	if b := v.syntaxBlock(ro.DefRange); b != nil {
		if a, ok := b.Body.Attributes["waves"]; ok {
			if tup, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok && i < len(tup.Exprs) {
				if inner, ok := tup.Exprs[i].(*hclsyntax.TupleConsExpr); ok && inner.Range() == wr && j < len(inner.Exprs) {
					return inner.Exprs[j].Range()
				}
			}
		}
	}
	return wr
}

// rolloutWaves checks a rollout's waves against the release's clusters
// and defaults wave_pause. It returns how many waves the rollout goes
// through (WaveList's, with the clusters in no wave as the last), 0
// without waves.
func (v *validator) rolloutWaves(r *Release) int {
	ro := r.Rollout
	hasWaves := ro.Waves != nil
	if ro.WavePauseRaw != "" && !ro.ImplicitStep {
		at := v.attr(ro.DefRange, "wave_pause")
		if len(ro.Waves) > 0 {
			v.errorf(at, "wave_pause with steps", "wave_pause is the pause of a rollout with waves and no steps. With steps, the last step's pause is how long each wave's analysis runs: set it there and remove wave_pause.")
		} else {
			v.errorf(at, "wave_pause without waves", "wave_pause is how long each wave's analysis runs, but this rollout has no waves. Remove wave_pause, or add waves.")
		}
	}
	if ro.ImplicitStep {
		d := v.duration(ro.DefRange, "wave_pause", ro.WavePauseRaw, DefaultWavePause)
		ro.WavePause = d
		ro.Steps[0].Pause, ro.Steps[0].PauseRaw = d, ro.WavePauseRaw
		if ro.WavePauseRaw == "" {
			ro.Steps[0].PauseRaw = "10m"
		}
	}
	if !hasWaves {
		return 0
	}
	if !v.cfg.Fleet() {
		v.needsClusters(v.attr(ro.DefRange, "waves"), "waves")
		return 0
	}
	if len(ro.Waves) == 0 {
		v.errorf(v.attr(ro.DefRange, "waves"), "No rollout waves", "waves = [] has no wave: list the clusters of each wave, such as [[\"staging\"], [\"eu-1\"]], or remove waves.")
		return 0
	}
	clusters := v.cfg.ClustersOf(r)
	of := make(map[string]bool, len(clusters))
	for _, c := range clusters {
		of[c] = true
	}
	inWave := map[string]int{}
	for i, w := range ro.Waves {
		if len(w) == 0 {
			v.errorf(ro.WaveRanges[i], "Empty rollout wave", "Wave %d lists no cluster: a wave is the clusters that roll out together. Remove it or name its clusters.", i+1)
		}
		for j, name := range w {
			at := v.waveEntry(ro, i, j)
			switch prev, dup := inWave[name]; {
			case v.clusterIdx[name] == nil:
				v.unknownCluster(at, fmt.Sprintf("wave %d", i+1), name)
			case !of[name]:
				v.errorf(at, "Cluster not of the release", "Wave %d names cluster %q, but the release does not run there (see its clusters or cluster_selector): a wave lists clusters of the release.", i+1, name)
			case dup && prev == i+1:
				v.errorf(at, "Duplicate cluster in waves", "Wave %d names cluster %q twice.", i+1, name)
			case dup:
				v.errorf(at, "Duplicate cluster in waves", "Cluster %q is in wave %d and wave %d: a cluster rolls out in one wave.", name, prev, i+1)
			default:
				inWave[name] = i + 1
			}
		}
	}
	return len(ro.WaveList(clusters))
}

// rolloutWavePosition checks the wave attribute of a rollout going
// through waves waves, as rolloutPosition checks step and version.
func (v *validator) rolloutWavePosition(ro *Rollout, waves int) {
	if ro.Wave != nil {
		at := v.attr(ro.DefRange, "wave")
		switch {
		case waves == 0:
			v.errorf(at, "wave without waves", "wave is the rollout's position among its waves, but this rollout has no waves. Remove wave.")
		case *ro.Wave < 1 || *ro.Wave > waves:
			v.errorf(at, "Invalid rollout wave", "wave is the rollout's position, from 1 to %d (the number of waves, the release's clusters in no wave counting as the last); got %d.", waves, *ro.Wave)
		}
		if ro.Step == nil || ro.Version == "" {
			v.errorf(at, "Rollout wave without step", "wave = %d says which wave the rollout is in but not where in it: set step and version too (Gantry's wave promotions write all three), or remove wave.", *ro.Wave)
		}
		return
	}
	if waves > 0 && ro.Step != nil && ro.Version != "" {
		v.errorf(v.attr(ro.DefRange, "step"), "Rollout step without wave", "step = %d says where the rollout is, but not in which of its waves: set wave too (Gantry's wave promotions write wave, step and version), or remove step and version.", *ro.Step)
	}
}
