package planner

import (
	"github.com/gantry-dev/gantry/schedule"
)

// FormatVersion is the version of the JSON plan schema. It changes only
// when a field is removed or changes meaning; adding fields keeps it.
//
// Version 2: in a fleet (specs with cluster blocks) a release's
// placement is keyed by "CLUSTER/NODE" and object actions carry the
// cluster; releases gain clusters, and actions the mirror type.
const FormatVersion = "2"

// QuantizerVersion is part of every content key. Bump it whenever the
// quantizer's output for the same input changes, so that every model is
// rebuilt once.
const QuantizerVersion = "gantry-compress/1"

// ActionType says what an action does. The string values are part of the
// JSON schema.
type ActionType string

const (
	Quantize ActionType = "quantize"
	Gate     ActionType = "gate"
	Push     ActionType = "push"
	Create   ActionType = "create"
	Update   ActionType = "update"
	Delete   ActionType = "delete"
	// Mirror copies a model image, by digest, into a cluster's registry
	// mirror.
	Mirror ActionType = "mirror"
	// Fuse merges a LoRA adapter into the model before it is quantized.
	Fuse ActionType = "fuse"
	// Eval runs one evaluator of the gate on the candidate build.
	Eval ActionType = "eval"
)

// Symbol is the one-character mark the text view uses, as Terraform does.
func (a ActionType) Symbol() string {
	switch a {
	case Create:
		return "+"
	case Update:
		return "~"
	case Delete:
		return "-"
	}
	return "*"
}

// IsBuild reports whether the action builds an artifact rather than
// changing an object.
func (a ActionType) IsBuild() bool {
	return a == Quantize || a == Gate || a == Push || a == Prestage || a == Mirror || a == Fuse || a == Eval
}

// Action is one step of a plan.
type Action struct {
	Type    ActionType `json:"action"`
	Release string     `json:"release"`
	// Cluster is the cluster an object, prestage or mirror action acts
	// in, in a fleet; "" for builds and for the single target.
	Cluster string `json:"cluster,omitempty"`
	// Subject is what the action acts on: "Deployment gantry/llama-a1" or
	// a model image reference.
	Subject string `json:"subject"`
	// Reason is a human sentence: why this action is in the plan.
	Reason string `json:"reason"`
	// ContentKey is set on build actions.
	ContentKey string `json:"content_key,omitempty"`
	// Object is the desired object for create and update, the live one for
	// delete.
	Object *Object `json:"object,omitempty"`
	// Changes lists, for an update, each field that differs.
	Changes []FieldChange `json:"changes,omitempty"`
	// Prestage is set on a prestage action.
	Prestage *PrestageSpec `json:"prestage,omitempty"`
	// Mirror is set on a mirror action.
	Mirror *MirrorSpec `json:"mirror,omitempty"`
	// Eval is set on an eval action.
	Eval *EvalAction `json:"eval,omitempty"`
}

// FieldChange is one field of an update. Old is absent when the field is
// new. Values are JSON-shaped; Sensitive values are redacted when rendered.
type FieldChange struct {
	Path      string `json:"path"`
	Old       any    `json:"old,omitempty"`
	New       any    `json:"new,omitempty"`
	Sensitive bool   `json:"sensitive,omitempty"`
}

// ReleasePlan summarises one release.
type ReleasePlan struct {
	Name       string             `json:"name"`
	ContentKey string             `json:"content_key"`
	Image      string             `json:"image"`              // model image reference, repository:tag
	Digest     string             `json:"digest,omitempty"`   // known digest, if the image exists
	Replicas   int                `json:"replicas"`           // desired
	Placement  schedule.Placement `json:"placement"`          // node -> replicas
	Unplaced   *schedule.Unplaced `json:"unplaced,omitempty"` // replicas that fit nowhere
	// ImageLocal are the nodes of Placement that hold the model image
	// already (the kubelet reports it): placement preferred them, and
	// their replicas start without a pull.
	ImageLocal []string `json:"image_local,omitempty"`
	// Held counts object changes left out of the plan because the release
	// cannot be fully placed and they would lower what serves now.
	Held int `json:"held,omitempty"`
	// Moving are the nodes whose shards stay, beyond Placement, until the
	// replicas replacing them are available (make before break).
	Moving []string `json:"moving,omitempty"`
	// Rollout is set for a release with a rollout block.
	Rollout *RolloutState `json:"rollout,omitempty"`
	// Clusters, in a fleet, are the release's part in each cluster it
	// runs in or has objects in, sorted by name.
	Clusters []ClusterPlan `json:"clusters,omitempty"`
}

// Plan is the outcome of Build. Actions are in execution order.
type Plan struct {
	FormatVersion string `json:"format_version"`
	// Revision is the Git commit of the specs ("" for a plain directory).
	Revision string `json:"revision,omitempty"`
	// Uncommitted says the specs had changes Revision does not hold (a
	// working copy with edits): the plan is of those files, not of the
	// commit.
	Uncommitted bool `json:"uncommitted,omitempty"`
	// ObservedDigest fingerprints the Observed state the plan was built
	// from. A saved plan may be applied only while it still matches.
	ObservedDigest string        `json:"observed_digest"`
	Releases       []ReleasePlan `json:"releases"`
	Actions        []Action      `json:"actions"`
	Warnings       []string      `json:"warnings,omitempty"`
}

// Summary counts the actions by kind.
type Summary struct {
	Add, Change, Destroy int
	Quantize, Gate, Push int
	Mirror               int
	Fuse, Eval           int
}

// Summary counts the plan's actions.
func (p *Plan) Summary() Summary {
	var s Summary
	for _, a := range p.Actions {
		switch a.Type {
		case Create:
			s.Add++
		case Update:
			s.Change++
		case Delete:
			s.Destroy++
		case Quantize:
			s.Quantize++
		case Gate:
			s.Gate++
		case Push:
			s.Push++
		case Mirror:
			s.Mirror++
		case Fuse:
			s.Fuse++
		case Eval:
			s.Eval++
		}
	}
	return s
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Actions) == 0 }
