package planner

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/gantry-dev/gantry/spec"
)

// Labels and annotations Gantry puts on every object it manages.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "gantry"
	LabelRelease   = "gantry.dev/release"
	// LabelNode selects a shard's pods; its value is NodeLabelValue(node).
	LabelNode = "gantry.dev/node"
	// AnnotationNode holds the full node name, which a label value (63
	// characters at most) cannot always hold.
	AnnotationNode = "gantry.dev/node"

	AnnotationSpecHash    = "gantry.dev/spec-hash"
	AnnotationModelDigest = "gantry.dev/model-digest"
	AnnotationContentKey  = "gantry.dev/content-key"
	AnnotationRevision    = "gantry.dev/revision"

	// GPUResource is the extended resource GPUs are requested by.
	GPUResource = "nvidia.com/gpu"
	// UnknownDigest stands in for a model image digest that only the push
	// step will know. The executor renders again once it does.
	UnknownDigest = "(known after push)"
)

// Object is one Kubernetes object as Gantry sees it: its identity and its
// manifest as JSON-shaped data (map[string]any, []any, string, float64 or
// int64, bool). A desired object holds only the fields Gantry owns.
type Object struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Namespace  string         `json:"namespace,omitempty"`
	Name       string         `json:"name"`
	Manifest   map[string]any `json:"manifest"`
	// Cluster is the cluster the object lives in, in a fleet ("" for
	// the single target).
	Cluster string `json:"cluster,omitempty"`
	// Version is the target's version of a live object: its
	// resourceVersion in a cluster, a hash of its file's bytes in a
	// directory; "" when unknown (and always for a desired object). Any
	// change to the object changes it. Memo relies on it; plans and
	// Observed.Digest do not include it.
	Version string `json:"-"`
	// Available is, for a live Deployment, status.availableReplicas as
	// the target saw it; nil when the target cannot say (a directory).
	Available *int `json:"-"`
}

// ID is "Kind/namespace/name", unique within a cluster.
func (o Object) ID() string { return o.Kind + "/" + o.Namespace + "/" + o.Name }

// Label returns a metadata label.
func (o Object) Label(k string) string { return o.meta("labels", k) }

// Annotation returns a metadata annotation.
func (o Object) Annotation(k string) string { return o.meta("annotations", k) }

func (o Object) meta(field, k string) string {
	md, _ := o.Manifest["metadata"].(map[string]any)
	m, _ := md[field].(map[string]any)
	s, _ := m[k].(string)
	return s
}

// Replicas is spec.replicas of a Deployment (0 when absent).
func (o Object) Replicas() int {
	sp, _ := o.Manifest["spec"].(map[string]any)
	switch v := sp["replicas"].(type) {
	case int64:
		return int(v)
	case float64:
		return int(v)
	case int:
		return v
	}
	return 0
}

// ObjectFromManifest builds an Object from decoded JSON or YAML.
func ObjectFromManifest(m map[string]any) (Object, error) {
	o := Object{Manifest: m}
	o.APIVersion, _ = m["apiVersion"].(string)
	o.Kind, _ = m["kind"].(string)
	md, _ := m["metadata"].(map[string]any)
	o.Name, _ = md["name"].(string)
	o.Namespace, _ = md["namespace"].(string)
	if o.Kind == "" || o.Name == "" {
		return o, fmt.Errorf("manifest has no kind or metadata.name")
	}
	return o, nil
}

// CopyManifest deep-copies a JSON-shaped manifest (maps, slices and
// scalars), so that the copy can be changed without touching m.
func CopyManifest(m map[string]any) map[string]any { return copyJSON(m).(map[string]any) }

func copyJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = copyJSON(e)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = copyJSON(e)
		}
		return out
	}
	return v
}

// Model describes the model image one release's pods mount.
type Model struct {
	Ref    string // repository:tag
	Digest string // sha256:..., or UnknownDigest
	Key    string // content key
}

// ImageRef is the reference pods use: by digest when it is known.
func (m Model) ImageRef() string { return m.Ref + "@" + m.Digest }

var nonDNS = regexp.MustCompile(`[^a-z0-9-]+`)

// ShardName names the Deployment of one release on one node. Names that
// would pass the 63-character limit are cut and given a hash suffix so that
// they stay unique.
func ShardName(release, node string) string {
	n := strings.Trim(nonDNS.ReplaceAllString(strings.ToLower(node), "-"), "-")
	name := release + "-" + n
	if len(name) <= 63 && n == strings.ToLower(node) {
		return name
	}
	sum := sha256.Sum256([]byte(release + "\x00" + node))
	suffix := hex.EncodeToString(sum[:])[:8]
	if len(name) > 54 {
		name = strings.TrimRight(name[:54], "-")
	}
	return name + "-" + suffix
}

// RenderInput is everything that shapes one release's objects.
type RenderInput struct {
	Release   *spec.Release
	Namespace string
	Revision  string
	Model     Model
	Placement map[string]int // node -> replicas
	// RuntimeDigest, if known, pins the runtime image: the container
	// references image@digest, so every pod of a rollout runs the same
	// bytes even if the tag moves.
	RuntimeDigest string
	// Hostnames maps node names to their kubernetes.io/hostname label
	// where it differs; shards are pinned by that label.
	Hostnames map[string]string
}

var (
	labelValueRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	nonLabel     = regexp.MustCompile(`[^-A-Za-z0-9_.]+`)
)

// NodeLabelValue is what the gantry.dev/node label holds for a node: the
// name itself when it is a valid label value (63 characters at most),
// else a cut of it with a hash suffix, unique per node.
func NodeLabelValue(node string) string {
	if len(node) <= 63 && labelValueRE.MatchString(node) {
		return node
	}
	sum := sha256.Sum256([]byte(node))
	cut := strings.Trim(nonLabel.ReplaceAllString(node, "-"), "-_.")
	if len(cut) > 54 {
		cut = strings.TrimRight(cut[:54], "-_.")
	}
	return cut + "-" + hex.EncodeToString(sum[:])[:8]
}

// renderedIDs are the IDs of the objects Render returns for release in
// namespace with placement, in the same order, without rendering them.
func renderedIDs(release, namespace string, placement map[string]int) []string {
	ids := []string{Object{Kind: "Service", Namespace: namespace, Name: release}.ID()}
	for _, node := range placedNodes(placement) {
		ids = append(ids, Object{Kind: "Deployment", Namespace: namespace, Name: ShardName(release, node)}.ID())
	}
	return ids
}

// placedNodes are the nodes placement gives replicas to, sorted.
func placedNodes(placement map[string]int) []string {
	nodes := make([]string, 0, len(placement))
	for n, c := range placement {
		if c > 0 {
			nodes = append(nodes, n)
		}
	}
	sort.Strings(nodes)
	return nodes
}

// Render returns the release's Service and one Deployment per node of the
// placement, sorted by node name.
func Render(in RenderInput) ([]Object, error) {
	labels, annotations := baseMeta(in)
	svc, err := renderService(in, in.Release.Name, map[string]string{LabelRelease: in.Release.Name}, labels, annotations)
	if err != nil {
		return nil, err
	}
	out := []Object{svc}
	for _, node := range placedNodes(in.Placement) {
		d, err := renderShard(in, node, int32(in.Placement[node]), labels, annotations, shardOpts{})
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// baseMeta are the labels and annotations of every object of a release.
func baseMeta(in RenderInput) (labels, annotations map[string]string) {
	r := in.Release
	labels = map[string]string{
		"app.kubernetes.io/name":      r.Name,
		"app.kubernetes.io/instance":  r.Name,
		"app.kubernetes.io/component": "model-server",
		LabelManagedBy:                ManagedBy,
		LabelRelease:                  r.Name,
	}
	annotations = map[string]string{
		AnnotationSpecHash:    r.PodHash(),
		AnnotationModelDigest: r.Model.Digest,
		AnnotationContentKey:  in.Model.Key,
	}
	if in.Revision != "" {
		annotations[AnnotationRevision] = in.Revision
	}
	return labels, annotations
}

// renderService is a Service of the release named name over the pods
// selector selects.
func renderService(in RenderInput, name string, selector, labels, annotations map[string]string) (Object, error) {
	r := in.Release
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: in.Namespace, Labels: labels, Annotations: annotations},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports: []corev1.ServicePort{{
				Name: "http", Port: int32(r.Runtime.Port), TargetPort: intstr.FromString("http"), Protocol: corev1.ProtocolTCP,
			}},
		},
	}
	return toObject(svc)
}

// shardOpts are what a rollout changes in a shard: its name, its version
// label and, for a shard named by VersionedShardName, a selector on
// gantry.dev/shard instead of gantry.dev/node (so that the selector of
// the other version's shard on the node never matches its pods).
type shardOpts struct {
	name     string // "": ShardName
	version  string // gantry.dev/version, on the Deployment and its pods
	canaryOf string // gantry.dev/canary-of
}

func renderShard(in RenderInput, node string, replicas int32, labels, annotations map[string]string, opt shardOpts) (Object, error) {
	r := in.Release
	name := opt.name
	if name == "" {
		name = ShardName(r.Name, node)
	}
	shardLabels := copyMap(labels)
	shardLabels[LabelNode] = NodeLabelValue(node)
	selector := map[string]string{LabelRelease: r.Name, LabelNode: NodeLabelValue(node)}
	podLabels := copyMap(shardLabels)
	if opt.version != "" {
		shardLabels[LabelVersion] = opt.version
		podLabels[LabelVersion] = opt.version
	}
	if name != ShardName(r.Name, node) {
		shardLabels[LabelShard] = name
		selector = map[string]string{LabelRelease: r.Name, LabelShard: name}
		delete(podLabels, LabelNode)
		podLabels[LabelShard] = name
	}
	shardAnnotations := copyMap(annotations)
	shardAnnotations[AnnotationNode] = node
	if opt.canaryOf != "" {
		shardAnnotations[AnnotationCanaryOf] = opt.canaryOf
	}
	hostname := node
	if h := in.Hostnames[node]; h != "" {
		hostname = h
	}
	podAnnotations := map[string]string{AnnotationSpecHash: annotations[AnnotationSpecHash], AnnotationContentKey: in.Model.Key}

	image := r.Runtime.Image
	if in.RuntimeDigest != "" && !strings.Contains(image, "@") {
		image += "@" + in.RuntimeDigest
	}
	server := corev1.Container{
		Name:  "server",
		Image: image,
		Args:  r.Runtime.Args,
		Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: int32(r.Runtime.Port), Protocol: corev1.ProtocolTCP}},
		Env:   env(r),
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: r.Runtime.HealthPath, Port: intstr.FromString("http")}},
			PeriodSeconds:    10,
			FailureThreshold: 3,
		},
		StartupProbe: &corev1.Probe{
			// Loading weights onto GPUs takes minutes; allow 30 minutes.
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: r.Runtime.HealthPath, Port: intstr.FromString("http")}},
			PeriodSeconds:    10,
			FailureThreshold: 180,
		},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("http")}},
			PeriodSeconds:    20,
			FailureThreshold: 3,
		},
		VolumeMounts: []corev1.VolumeMount{{Name: "model", MountPath: "/models", ReadOnly: true}},
	}
	res, err := resources(r)
	if err != nil {
		return Object{}, err
	}
	server.Resources = res

	pod := corev1.PodSpec{
		NodeSelector: map[string]string{"kubernetes.io/hostname": hostname},
		Tolerations:  []corev1.Toleration{{Key: GPUResource, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
		Containers:   []corev1.Container{server},
	}
	switch r.Model.Packaging {
	case "modelcar":
		// KServe's modelcar: the model image runs as a sidecar in a shared
		// process namespace and links its /models into a shared emptyDir,
		// which the server reads through /proc.
		share := true
		pod.ShareProcessNamespace = &share
		pod.Volumes = []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		pod.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "model", MountPath: "/mnt"}}
		pod.Containers[0].Env = append(pod.Containers[0].Env, corev1.EnvVar{Name: "MODEL_DIR", Value: "/mnt/models"})
		pod.Containers = append(pod.Containers, corev1.Container{
			Name:         "modelcar",
			Image:        in.Model.ImageRef(),
			Command:      []string{"sh", "-c", "ln -sfn /proc/$$/root/models /mnt/models && exec sleep infinity"},
			VolumeMounts: []corev1.VolumeMount{{Name: "model", MountPath: "/mnt"}},
			Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("16Mi"),
			}},
		})
	default:
		pod.Volumes = []corev1.Volume{{Name: "model", VolumeSource: corev1.VolumeSource{
			Image: &corev1.ImageVolumeSource{Reference: in.Model.ImageRef(), PullPolicy: corev1.PullIfNotPresent},
		}}}
	}

	d := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: in.Namespace, Labels: shardLabels, Annotations: shardAnnotations},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: selector},
			// The default 10 minutes would mark a shard failed
			// (ProgressDeadlineExceeded) while its pod pulls the model
			// image and loads weights, which the startup probe allows 30
			// minutes for. The deadline restarts whenever a pod becomes
			// available, so it bounds one pod's start, not the rollout.
			ProgressDeadlineSeconds: ptr(int32(3600)),
			Strategy: appsv1.DeploymentStrategy{
				// One pod at a time: the node's reserve holds the GPUs for
				// the surge pod, and the old pod serves until it is ready.
				Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{
					MaxSurge: ptr(intstr.FromInt32(1)), MaxUnavailable: ptr(intstr.FromInt32(0)),
				},
			},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: podLabels, Annotations: podAnnotations},
				Spec:       pod,
			},
		},
	}
	return toObject(d)
}

func env(r *spec.Release) []corev1.EnvVar {
	var out []corev1.EnvVar
	for _, k := range sortedKeys(r.Runtime.Env) {
		out = append(out, corev1.EnvVar{Name: k, Value: r.Runtime.Env[k]})
	}
	for _, k := range sortedKeys(r.Runtime.SecretEnv) {
		name, key, _ := strings.Cut(r.Runtime.SecretEnv[k], "/")
		out = append(out, corev1.EnvVar{Name: k, ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: name}, Key: key},
		}})
	}
	return out
}

func resources(r *spec.Release) (corev1.ResourceRequirements, error) {
	var rr corev1.ResourceRequirements
	if g := r.GPUCount(); g > 0 {
		q := *resource.NewQuantity(int64(g), resource.DecimalSI)
		rr.Limits = corev1.ResourceList{GPUResource: q}
		rr.Requests = corev1.ResourceList{GPUResource: q}
	}
	if r.Resources == nil {
		return rr, nil
	}
	for name, raw := range map[corev1.ResourceName]string{corev1.ResourceCPU: r.Resources.CPU, corev1.ResourceMemory: r.Resources.Memory} {
		if raw == "" {
			continue
		}
		q, err := resource.ParseQuantity(raw)
		if err != nil {
			return rr, fmt.Errorf("release %s: %s %q: %w", r.Name, name, raw, err)
		}
		if rr.Requests == nil {
			rr.Requests = corev1.ResourceList{}
		}
		rr.Requests[name] = q
		if name == corev1.ResourceMemory {
			if rr.Limits == nil {
				rr.Limits = corev1.ResourceList{}
			}
			rr.Limits[name] = q
		}
	}
	return rr, nil
}

// toObject converts a typed object to the JSON-shaped form and drops the
// empty fields the typed structs always carry (creationTimestamp, status),
// which Gantry does not own.
func toObject(obj runtime.Object) (Object, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return Object{}, fmt.Errorf("render %T: %w", obj, err)
	}
	prune(m)
	return ObjectFromManifest(m)
}

// prune removes nils and empty maps recursively, except emptyDir, whose
// empty value is what selects the volume type.
func prune(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case nil:
			delete(m, k)
		case map[string]any:
			prune(t)
			if len(t) == 0 && k != "emptyDir" {
				delete(m, k)
			}
		case []any:
			for _, e := range t {
				if em, ok := e.(map[string]any); ok {
					prune(em)
				}
			}
		}
	}
}

func copyMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func ptr[T any](v T) *T { return &v }
