package kube

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	gatewayv1 "sigs.k8s.io/gateway-api/apis/v1"
)

// FieldManager is the server-side apply field manager Gantry applies as.
const FieldManager = "gantry"

// Client observes and changes one cluster. It is safe for concurrent use.
type Client struct {
	typed kubernetes.Interface
	dyn   dynamic.Interface
	poll  time.Duration
	// Informers watch through clients without the request timeout, which
	// would end every watch stream after it; the server ends them instead
	// (timeoutSeconds), and the reflector resumes.
	watchTyped kubernetes.Interface
	watchDyn   dynamic.Interface

	mu    sync.Mutex
	cache *Cache // set by StartCache; nil: Observe lists

	goneLogged sync.Map // kind key -> true: noteKindGone logged it
}

type options struct {
	poll       time.Duration
	qps        float32
	burst      int
	reqTimeout time.Duration
}

// Option changes how New builds a Client.
type Option func(*options) error

// WithPollInterval sets how often WaitRollout reads the shards' status.
// Default 2s.
func WithPollInterval(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("poll interval must be positive, got %s", d)
		}
		o.poll = d
		return nil
	}
}

// WithRateLimit sets the client-side rate limit. Default 50 requests per
// second with bursts of 100, instead of client-go's 5 and 10: an apply
// costs up to three requests per object (get, dry-run, apply).
func WithRateLimit(qps float32, burst int) Option {
	return func(o *options) error {
		if qps <= 0 || burst <= 0 {
			return fmt.Errorf("rate limit must be positive, got %g/s burst %d", qps, burst)
		}
		o.qps, o.burst = qps, burst
		return nil
	}
}

// WithRequestTimeout bounds every single API request. Default 30s, so that
// an API server that accepts connections but never answers cannot hang a
// reconcile; the caller's context bounds the whole operation.
func WithRequestTimeout(d time.Duration) Option {
	return func(o *options) error {
		if d <= 0 {
			return fmt.Errorf("request timeout must be positive, got %s", d)
		}
		o.reqTimeout = d
		return nil
	}
}

// New returns a Client for the cluster cfg points at. cfg is copied, not
// changed; its QPS, Burst and Timeout are replaced by the options' values
// unless cfg sets them.
func New(cfg *rest.Config, opts ...Option) (*Client, error) {
	if cfg == nil {
		return nil, fmt.Errorf("kube: no rest config")
	}
	o := options{poll: 2 * time.Second, qps: 50, burst: 100, reqTimeout: 30 * time.Second}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("kube: %w", err)
		}
	}
	c := rest.CopyConfig(cfg)
	if c.QPS == 0 {
		c.QPS = o.qps
	}
	if c.Burst == 0 {
		c.Burst = o.burst
	}
	if c.Timeout == 0 {
		c.Timeout = o.reqTimeout
	}
	if c.UserAgent == "" {
		c.UserAgent = "gantry"
	}
	typed, err := kubernetes.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	dyn, err := dynamic.NewForConfig(c)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	w := rest.CopyConfig(c)
	w.Timeout = 0
	watchTyped, err := kubernetes.NewForConfig(w)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	watchDyn, err := dynamic.NewForConfig(w)
	if err != nil {
		return nil, fmt.Errorf("kube: %w", err)
	}
	return &Client{typed: typed, dyn: dyn, poll: o.poll, watchTyped: watchTyped, watchDyn: watchDyn}, nil
}

// kind is one object kind Gantry applies. The table is fixed rather than
// discovered: Gantry renders only these kinds, and discovery would cost
// round trips on every reconcile.
type kind struct {
	gvr        schema.GroupVersionResource
	namespaced bool
	// absent is set for a kind a CRD defines, which a cluster may not
	// serve: Apply fails with it (wrapped) when the cluster does not, and
	// Observe sees no objects of the kind instead of failing.
	absent error
}

// ErrNoHTTPRouteCRD is what Apply returns (wrapped) for an HTTPRoute when
// the cluster does not serve gateway.networking.k8s.io/v1 HTTPRoutes.
var ErrNoHTTPRouteCRD = errors.New(`the cluster has no Gateway API HTTPRoute CRD (` + gatewayv1.GroupVersion.String() +
	`); install the Gateway API CRDs or set traffic = "service"`)

// KindHTTPRoute is the kind key of Gateway API HTTPRoutes.
const KindHTTPRoute = "gateway.networking.k8s.io/v1/HTTPRoute"

var kinds = map[string]kind{
	"v1/Namespace":       {gvr: schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}},
	"v1/Service":         {gvr: schema.GroupVersionResource{Version: "v1", Resource: "services"}, namespaced: true},
	"apps/v1/Deployment": {gvr: schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}, namespaced: true},
	KindHTTPRoute:        {gvr: schema.GroupVersionResource{Group: gatewayv1.GroupName, Version: "v1", Resource: "httproutes"}, namespaced: true, absent: ErrNoHTTPRouteCRD},
}

// managedKinds are the kinds Observe lists and Apply may prune, in the
// order Observe lists them (it returns them sorted by ID).
var managedKinds = []string{"apps/v1/Deployment", "v1/Service", KindHTTPRoute}

// kindGone reports whether err, from a List or Watch of an optional kind
// (one with absent set), means the kind cannot be read at all: the
// cluster does not serve the resource (404), or RBAC does not let Gantry
// read it (403; an older ClusterRole). Observe then sees none of it.
func kindGone(err error) bool {
	return apierrors.IsNotFound(err) || apierrors.IsForbidden(err)
}

// noResource reports whether err is the API server's 404 for a resource
// it does not serve, as opposed to one for a missing object, which names
// the object.
func noResource(err error) bool {
	if !apierrors.IsNotFound(err) {
		return false
	}
	var st apierrors.APIStatus
	if !errors.As(err, &st) {
		return false
	}
	d := st.Status().Details
	return d == nil || d.Name == ""
}

// noteKindGone logs, once per client and kind, that Observe does not see
// a kind: at Debug when the cluster does not serve it (a cluster without
// the Gateway API is normal), at Warn when RBAC forbids it.
func (c *Client) noteKindGone(key string, err error) {
	if _, logged := c.goneLogged.LoadOrStore(key, true); logged {
		return
	}
	if apierrors.IsForbidden(err) {
		slog.Warn("observe: not allowed to read "+key+"; Gantry does not see or prune them (grant get, list, watch, create, patch, delete on them)",
			"kind", key, "err", err)
		return
	}
	slog.Debug("observe: the cluster does not serve "+key+"; none observed", "kind", key)
}

func kindOf(apiVersion, k string) (kind, error) {
	kd, ok := kinds[apiVersion+"/"+k]
	if !ok {
		return kind{}, fmt.Errorf("kind %s %s is not one Gantry manages", apiVersion, k)
	}
	return kd, nil
}
