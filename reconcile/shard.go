package reconcile

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/reconcile/kube"
	"github.com/gantry-dev/gantry/schedule"
	"github.com/gantry-dev/gantry/spec"
)

// LabelShard is put on every object a sharded engine applies: the
// assignment ("1-of-2") of the shard that applied it. A shard never
// prunes an object that carries another assignment (see Shard).
const LabelShard = "gantry.dev/shard"

// MaxShards bounds --shard's count: the label and the metric stay small.
const MaxShards = 1024

// Shard is one of Count gantry processes that split the releases of one
// repository between them (gantry run --shard Index/Count). Each owns the
// releases whose name ShardOf maps to its Index, and only those: it plans,
// builds, applies and prunes nothing else.
//
// Pruning: an object whose release left the specs belongs to the shard
// its release name hashes to, so a removed release is still pruned, and
// by one shard only. As a guard against replicas started with different
// counts (a half-finished rescale, a typo in one manifest), a shard does
// not prune an object labelled gantry.dev/shard with another assignment
// than its own: it logs it and lists it in the status (Shard.NotPruned),
// and the operator deletes it or removes the label. Objects with no label
// (applied before sharding) are pruned by their owner by hash. A
// misconfigured shard cannot delete what another shard serves: releases
// still in the specs are never pruned, whoever owns them, and for removed
// ones the label must agree.
//
// GPUs: each shard places only its own releases, but the GPUs are shared.
// Placement counts its own releases through their live Deployments (the
// planner's current placement), and Observe on a cluster counts pods that
// Gantry does not manage in the namespace as used. Gantry-managed pods are
// left out there, so the Deployments of other shards' releases (and the
// objects a shard will not prune) are counted here instead: their
// spec.replicas times the GPUs of their pod template, on the node the
// Deployment is pinned to, are added to that node's Used. That is what
// those shards asked for, whether or not their pods are scheduled yet; it
// works the same on a directory target, which has no pods. Two shards that
// place into the same free GPUs in the same moment can still both pick
// them; the pods of the later one stay Pending and its next reconcile sees
// the node as full.
type Shard struct {
	Index, Count int
}

// ShardOf is the shard (0 <= shard < count) that owns a release: jump
// consistent hash (Lamping and Veach, 2014) keyed by the first 8 bytes,
// big-endian, of the SHA-256 of the release name. It is stable across
// versions and machines, spreads names evenly, and when count grows from
// n to n+1 only about 1/(n+1) of the releases move (to the new shard).
// Every place that decides ownership calls it; count < 1 means one shard.
func ShardOf(release string, count int) int {
	if count <= 1 {
		return 0
	}
	sum := sha256.Sum256([]byte(release))
	key := binary.BigEndian.Uint64(sum[:8])
	var b, j int64 = -1, 0
	for j < int64(count) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}

// Owns reports whether the release is this shard's.
func (s *Shard) Owns(release string) bool { return ShardOf(release, s.Count) == s.Index }

// String is "i/n", as --shard takes it.
func (s *Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// LabelValue is the gantry.dev/shard label value, "i-of-n" (a label value
// cannot hold "/").
func (s *Shard) LabelValue() string { return fmt.Sprintf("%d-of-%d", s.Index, s.Count) }

// ParseShardLabel reads a gantry.dev/shard label value.
func ParseShardLabel(v string) (Shard, bool) {
	i, n, ok := strings.Cut(v, "-of-")
	if !ok {
		return Shard{}, false
	}
	idx, err1 := strconv.Atoi(i)
	cnt, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || cnt < 1 || idx < 0 || idx >= cnt {
		return Shard{}, false
	}
	return Shard{Index: idx, Count: cnt}, true
}

// ShardStatus is the shard part of the status page and /api/status.
type ShardStatus struct {
	Index int `json:"index"`
	Count int `json:"count"`
	// Releases are the releases of the specs this shard owns, sorted.
	Releases []string `json:"releases"`
	// Others is how many releases of the specs other shards own.
	Others int `json:"other_releases"`
	// NotPruned are objects of removed releases that hash to this shard
	// but carry another shard's label: "Kind/namespace/name (label)".
	NotPruned []string `json:"not_pruned,omitempty"`
}

// own returns a copy of cfg holding only the releases s owns, and how
// many it left out. A nil s owns everything.
func (s *Shard) own(cfg *spec.Config) (*spec.Config, int) {
	if s == nil {
		return cfg, 0
	}
	out := *cfg
	out.Releases = make([]spec.Release, 0, len(cfg.Releases)/max(s.Count, 1)+1)
	for i := range cfg.Releases {
		if s.Owns(cfg.Releases[i].Name) {
			out.Releases = append(out.Releases, cfg.Releases[i])
		}
	}
	return &out, len(cfg.Releases) - len(out.Releases)
}

// split divides the observed managed objects into the ones s plans
// against (its releases', and the removed releases' it prunes) and the
// rest, whose Deployments' GPUs are added to the nodes' Used (on a copy).
// own is cfg as s.own returned it. A nil s keeps everything.
func (s *Shard) split(own *spec.Config, objs []planner.Object, nodes []schedule.Node, log *slog.Logger) ([]planner.Object, []schedule.Node, []string) {
	if s == nil {
		return objs, nodes, nil
	}
	mine := make([]planner.Object, 0, len(objs))
	used := map[string]int{}
	var notPruned []string
	for _, o := range objs {
		if o.Label(planner.LabelManagedBy) != planner.ManagedBy {
			mine = append(mine, o) // the planner ignores them anyway
			continue
		}
		rel := o.Label(planner.LabelRelease)
		ours := s.Owns(rel)
		if _, inSpecs := own.Release(rel); ours && !inSpecs {
			if l := o.Label(LabelShard); l != "" && l != s.LabelValue() {
				ours = false
				notPruned = append(notPruned, fmt.Sprintf("%s (%s=%s)", o.ID(), LabelShard, l))
				log.Warn("not pruning an object another shard assignment applied; are the replicas started with different --shard counts?",
					"object", o.ID(), "release", rel, "label", l, "shard", s.LabelValue())
			}
		}
		if ours {
			mine = append(mine, o)
			continue
		}
		if node, gpus := deploymentGPUs(o); gpus > 0 {
			used[node] += gpus
		}
	}
	if len(used) == 0 {
		return mine, nodes, notPruned
	}
	out := append([]schedule.Node(nil), nodes...)
	for i := range out {
		out[i].Used += used[out[i].Name]
	}
	return mine, out, notPruned
}

// deploymentGPUs is the node a managed shard Deployment is pinned to and
// the GPUs its replicas ask for; 0 for anything else.
func deploymentGPUs(o planner.Object) (string, int) {
	if o.Kind != "Deployment" {
		return "", 0
	}
	node := o.Annotation(planner.AnnotationNode)
	if node == "" {
		node = o.Label(planner.LabelNode)
	}
	b, err := json.Marshal(o.Manifest)
	if err != nil {
		return "", 0
	}
	var d appsv1.Deployment
	if err := json.Unmarshal(b, &d); err != nil || node == "" {
		return "", 0
	}
	replicas := 1 // the API server's default
	if d.Spec.Replicas != nil {
		replicas = int(*d.Spec.Replicas)
	}
	return node, replicas * int(kube.PodGPUs(&d.Spec.Template.Spec))
}

// label returns the actions with the shard label added to the objects
// they create or update, on copies: the plan's objects stay as planned.
func (s *Shard) label(actions []planner.Action) []planner.Action {
	if s == nil {
		return actions
	}
	out := make([]planner.Action, len(actions))
	for i, a := range actions {
		out[i] = a
		if a.Object == nil || (a.Type != planner.Create && a.Type != planner.Update) {
			continue
		}
		o := *a.Object
		o.Manifest = copyMap(o.Manifest)
		md, _ := o.Manifest["metadata"].(map[string]any)
		md = copyMap(md)
		labels, _ := md["labels"].(map[string]any)
		labels = copyMap(labels)
		labels[LabelShard] = s.LabelValue()
		md["labels"] = labels
		o.Manifest["metadata"] = md
		out[i].Object = &o
	}
	return out
}

func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m)+1)
	for k, v := range m {
		out[k] = v
	}
	return out
}

// shardStatus is s's part of the status; nil without sharding.
func (s *Shard) status(own *spec.Config, others int, notPruned []string) *ShardStatus {
	if s == nil {
		return nil
	}
	st := &ShardStatus{Index: s.Index, Count: s.Count, Releases: make([]string, 0, len(own.Releases)), Others: others, NotPruned: notPruned}
	for i := range own.Releases {
		st.Releases = append(st.Releases, own.Releases[i].Name)
	}
	return st
}
