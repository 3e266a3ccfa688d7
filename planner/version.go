package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Labels and annotations of progressive delivery.
const (
	// LabelVersion is a shard's version (Version of the release it was
	// rendered from), on the Deployment and its pods, for releases with a
	// rollout block.
	LabelVersion = "gantry.dev/version"
	// LabelShard selects the pods of a versioned shard (one named by
	// VersionedShardName): its value is the Deployment's name. Those pods
	// carry no gantry.dev/node label, so that the selector of an older
	// shard on the same node ({release, node}) never matches them.
	LabelShard = "gantry.dev/shard"
	// AnnotationCanaryOf is, on the shards of a canary, the version it
	// was started against: the stable version of its rollout.
	AnnotationCanaryOf = "gantry.dev/canary-of"
)

// Prestage is the action that pulls a model image on named nodes before
// their shards change (Action.Prestage says what and where).
const Prestage ActionType = "prestage"

// Version is the short identity of the pods a release renders: a hash of
// its pod-shaping inputs (spec.Release.PodHash) and its content key.
// Replicas, placement and the rollout block do not change it.
func Version(r *spec.Release) string { return versionFrom(r.PodHash(), ContentKey(r)) }

// versionFrom is Version from a pod hash and a content key, as a shard's
// pod template annotations record them.
func versionFrom(podHash, key string) string {
	sum := sha256.Sum256([]byte(podHash + "\x00" + key))
	return hex.EncodeToString(sum[:])[:8]
}

// VersionedShardName names the Deployment of a release's version on a
// node: ShardName with the version appended, cut with a hash so that it
// stays within 63 characters and unique.
func VersionedShardName(release, node, version string) string {
	base := ShardName(release, node)
	if len(base)+1+len(version) <= 63 {
		return base + "-" + version
	}
	sum := sha256.Sum256([]byte(release + "\x00" + node))
	cut := strings.TrimRight(base[:62-len(version)-9], "-")
	return cut + "-" + hex.EncodeToString(sum[:])[:8] + "-" + version
}

// PrestageSpec is what a prestage action pulls, and where.
type PrestageSpec struct {
	// Image is the model image, by digest.
	Image string `json:"image"`
	// Packaging is the release's model packaging: "modelpack" mounts
	// Image as an image volume, "modelcar" runs it.
	Packaging string `json:"packaging"`
	// RuntimeImage is the serving container's image; a modelpack pull
	// pod runs it (and so pulls it too) with a command that exits.
	RuntimeImage string `json:"runtime_image"`
	// Version is the version whose shards wait on the pull.
	Version string `json:"version"`
	// Nodes are the nodes to pull on, sorted; Hostnames their
	// kubernetes.io/hostname where it differs from the name.
	Nodes     []string          `json:"nodes"`
	Hostnames map[string]string `json:"hostnames,omitempty"`
	// Bytes is the image's size when the registry said (0: unknown).
	Bytes int64 `json:"bytes,omitempty"`
	// Timeout bounds the wait; past it the shards are applied anyway and
	// the status says so.
	Timeout time.Duration `json:"timeout_ns"`
}

// Rollout phases.
const (
	// RolloutProgressing: the canary is at a step, short of every replica.
	RolloutProgressing = "progressing"
	// RolloutRestoring: the specs went back to a version that was the
	// stable one of a rollout (an abort, or a person's revert); it takes
	// every replica again at once, and the canary goes once it serves.
	RolloutRestoring = "restoring"
	// RolloutComplete: the new version has every replica; the old
	// version's shards go once the new ones serve.
	RolloutComplete = "complete"
	// RolloutWaiting: in a fleet, the cluster's wave has not started; the
	// version it replaces keeps every replica there.
	RolloutWaiting = "waiting"
)

// RolloutState is where a release's rollout is, as the planner derived it
// from the specs' position and the live shards.
type RolloutState struct {
	Phase string `json:"phase"`
	// Canary is the release's version now (the new one); Stable the
	// version it replaces ("" when none serves).
	Canary string `json:"canary"`
	Stable string `json:"stable,omitempty"`
	// Step is the step applied now (1-based) of Steps.
	Step  int `json:"step"`
	Steps int `json:"steps"`
	// CanaryReplicas and StableReplicas are what the step wants;
	// CanaryAvailable and StableAvailable what serves (a target that
	// cannot say, a directory, counts every replica as serving).
	CanaryReplicas  int `json:"canary_replicas"`
	StableReplicas  int `json:"stable_replicas"`
	CanaryAvailable int `json:"canary_available"`
	StableAvailable int `json:"stable_available"`
	// CanaryShards and StableShards are the Deployments of each version
	// after the plan (the stable ones as they live).
	CanaryShards []string `json:"canary_shards"`
	StableShards []string `json:"stable_shards,omitempty"`
	// Weight is the percent of traffic sent to the canary: the HTTPRoute's
	// weight with traffic = "gateway", else the replica ratio.
	Weight int `json:"weight"`
	// Ready says the step is fully in place: every canary replica it wants
	// is available and the stable version is down to its share. Analysis
	// counts only while it is.
	Ready bool `json:"ready"`
	// Pause is the step's pause (0: a person promotes; or the last step).
	Pause time.Duration `json:"pause_ns,omitempty"`
	// Next says in words when and on what condition the next step comes.
	Next string `json:"next"`
	// Wave is the wave the rollout is in (1-based) of Waves, and
	// WaveClusters its clusters, for a fleet's rollout with waves; 0
	// otherwise.
	Wave         int      `json:"wave,omitempty"`
	Waves        int      `json:"waves,omitempty"`
	WaveClusters []string `json:"wave_clusters,omitempty"`
}
