package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"

	"github.com/gantry-dev/gantry/planner"
	"github.com/gantry-dev/gantry/spec"
)

// errCacheUnusable says the informer cache may not be read now (not
// synced, a watch down, a write not yet seen); Observe lists instead.
var errCacheUnusable = errors.New("informer cache not usable")

// podFieldSelector keeps the Pod cache to what gpusInUse counts: bound
// pods that have not finished. A pod that finishes leaves the selector
// and the watch reports it deleted.
const podFieldSelector = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"

// CacheOptions tune StartCache. Zero values take the defaults.
type CacheOptions struct {
	// SyncTimeout bounds each wait for informers to fill: Nodes and Pods
	// in StartCache, a namespace's managed objects on its first Observe.
	// Default 2m.
	SyncTimeout time.Duration
	// WriteTimeout bounds how long Observe waits for the cache to show
	// Gantry's own last writes before it lists instead. Default 10s.
	WriteTimeout time.Duration
	// RetryAfter is how long Observe lists, without trying again, after the
	// managed objects of a namespace failed to sync (say RBAC allows list
	// but not watch). Default 5m.
	RetryAfter time.Duration
}

// Cache holds shared informers for what Observe reads. Client.StartCache
// makes one; Observe then reads listers instead of listing. See doc.go for
// when it is trusted.
type Cache struct {
	c    *Client
	ctx  context.Context // the informers' lifetime
	opts CacheOptions
	stop context.CancelFunc // ends every informer

	nodes, pods *informer

	mu         sync.Mutex
	namespace  string               // whose managed objects are watched
	managed    map[string]*informer // by kind key ("apps/v1/Deployment")
	stopNS     context.CancelFunc
	nsFailedAt time.Time
	nsFailedIn string
	expect     map[expectKey]expectation // writes Observe must see first
}

// informer is a shared informer and whether its watch is up.
type informer struct {
	name string
	inf  cache.SharedIndexInformer
	opt  *optionalKind // set for a kind the cluster may not serve

	mu        sync.Mutex
	gen       int
	connected bool
	lastErr   error
}

func (i *informer) connect() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.gen++
	i.connected, i.lastErr = true, nil
	return i.gen
}

func (i *informer) disconnect(gen int, err error) {
	i.mu.Lock()
	defer i.mu.Unlock()
	if gen == 0 || gen == i.gen {
		i.connected = false
		if err != nil {
			i.lastErr = err
		}
	}
}

// usable is nil when the informer has synced and its watch is open.
func (i *informer) usable() error {
	if !i.inf.HasSynced() {
		return fmt.Errorf("%w: %s not synced", errCacheUnusable, i.name)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	if !i.connected {
		if i.lastErr != nil {
			return fmt.Errorf("%w: %s watch is down: %v", errCacheUnusable, i.name, i.lastErr)
		}
		return fmt.Errorf("%w: %s watch is down", errCacheUnusable, i.name)
	}
	return nil
}

// newInformer builds an informer whose ListerWatcher reports when its
// watch opens and closes, so Observe never reads a cache whose watch is
// down: the reflector retries a refused connection by itself and would
// never tell.
func newInformer(name string, list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext, example runtime.Object, transform cache.TransformFunc) *informer {
	i := &informer{name: name}
	lw := &cache.ListWatch{
		ListWithContextFunc: list,
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := watchFn(ctx, o)
			if err != nil {
				i.disconnect(0, err)
				return nil, err
			}
			if p, ok := w.(*placeholderWatch); ok {
				// Nothing to miss: the kind is not served. Its end
				// (a recheck) is no outage.
				i.connect()
				return p, nil
			}
			return newTrackedWatch(w, i, i.connect()), nil
		},
	}
	i.inf = cache.NewSharedIndexInformer(lw, example, 0, cache.Indexers{})
	_ = i.inf.SetTransform(transform)
	_ = i.inf.SetWatchErrorHandlerWithContext(func(ctx context.Context, r *cache.Reflector, err error) {
		i.disconnect(0, err)
		if errors.Is(err, errKindAppeared) {
			return // not a failure: the reflector lists the new kind now
		}
		cache.DefaultWatchErrorHandler(ctx, r, err)
	})
	return i
}

// trackedWatch forwards a watch and marks the informer disconnected when
// the stream ends or carries an error.
type trackedWatch struct {
	w    watch.Interface
	ch   chan watch.Event
	done chan struct{}
	once sync.Once
}

func newTrackedWatch(w watch.Interface, i *informer, gen int) *trackedWatch {
	t := &trackedWatch{w: w, ch: make(chan watch.Event), done: make(chan struct{})}
	go func() {
		defer close(t.ch)
		defer i.disconnect(gen, nil) // runs before close: the reflector sees the close after
		for e := range w.ResultChan() {
			if e.Type == watch.Error {
				i.disconnect(gen, fmt.Errorf("watch error event"))
			}
			select {
			case t.ch <- e:
			case <-t.done:
				return
			}
		}
	}()
	return t
}

func (t *trackedWatch) ResultChan() <-chan watch.Event { return t.ch }

func (t *trackedWatch) Stop() {
	t.once.Do(func() { close(t.done) })
	t.w.Stop()
}

// StartCache starts informers on Nodes and on the pods that hold GPUs
// (field selector podFieldSelector), waits until both are synced, and from
// then on makes Observe read them. The managed Deployments, Services and
// HTTPRoutes of a namespace get their informers on the first Observe of
// that namespace.
// The informers run until ctx ends. When they do not sync within
// SyncTimeout, StartCache stops them and returns an error; Observe keeps
// listing.
func (c *Client) StartCache(ctx context.Context, opts CacheOptions) error {
	if opts.SyncTimeout <= 0 {
		opts.SyncTimeout = 2 * time.Minute
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = 5 * time.Minute
	}
	ctx, cancel := context.WithCancel(ctx)
	ch := &Cache{c: c, ctx: ctx, stop: cancel, opts: opts, expect: map[expectKey]expectation{}}
	nodes := c.typed.CoreV1().Nodes()
	ch.nodes = newInformer("nodes",
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return nodes.List(ctx, o) },
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.watchTyped.CoreV1().Nodes().Watch(ctx, o)
		},
		&corev1.Node{}, slimNode)
	pods := c.typed.CoreV1().Pods(metav1.NamespaceAll)
	withSelector := func(o metav1.ListOptions) metav1.ListOptions { o.FieldSelector = podFieldSelector; return o }
	ch.pods = newInformer("pods",
		func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return pods.List(ctx, withSelector(o))
		},
		func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return c.watchTyped.CoreV1().Pods(metav1.NamespaceAll).Watch(ctx, withSelector(o))
		},
		&corev1.Pod{}, slimPod)
	go ch.nodes.inf.RunWithContext(ctx)
	go ch.pods.inf.RunWithContext(ctx)
	if err := waitSynced(ctx, opts.SyncTimeout, ch.nodes, ch.pods); err != nil {
		cancel()
		return fmt.Errorf("kube: start informer cache: %w", err)
	}
	c.mu.Lock()
	c.cache = ch
	c.mu.Unlock()
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		if c.cache == ch {
			c.cache = nil
		}
		c.mu.Unlock()
	})
	return nil
}

func waitSynced(ctx context.Context, timeout time.Duration, infs ...*informer) error {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	synced := make([]cache.InformerSynced, len(infs))
	for i, inf := range infs {
		synced[i] = inf.inf.HasSynced
	}
	if cache.WaitForCacheSync(wctx.Done(), synced...) {
		return nil
	}
	var names []string
	for _, inf := range infs {
		if !inf.inf.HasSynced() {
			names = append(names, inf.name)
		}
	}
	return fmt.Errorf("%v not synced within %s", names, timeout)
}

// Cached reports whether Observe reads the informer cache (it may still
// list when the cache is not usable at that moment).
func (c *Client) Cached() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache != nil
}

func (c *Client) informerCache() *Cache {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cache
}

// managedFor returns the synced informers of namespace's managed kinds,
// starting them (and stopping another namespace's) when needed.
func (ch *Cache) managedFor(namespace string) (map[string]*informer, error) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.namespace == namespace && ch.managed != nil {
		return ch.managed, nil
	}
	if ch.nsFailedIn == namespace && time.Since(ch.nsFailedAt) < ch.opts.RetryAfter {
		return nil, fmt.Errorf("%w: managed objects of %s did not sync at %s", errCacheUnusable, namespace, ch.nsFailedAt.Format(time.RFC3339))
	}
	if ch.stopNS != nil {
		ch.stopNS()
		ch.stopNS, ch.managed, ch.namespace = nil, nil, ""
	}
	ctx, cancel := context.WithCancel(ch.ctx)
	sel := planner.LabelManagedBy + "=" + planner.ManagedBy
	managed := map[string]*informer{}
	var all []*informer
	for _, k := range managedKinds {
		ri := ch.c.dyn.Resource(kinds[k].gvr).Namespace(namespace)
		wi := ch.c.watchDyn.Resource(kinds[k].gvr).Namespace(namespace)
		var list cache.ListWithContextFunc = func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel
			return ri.List(ctx, o)
		}
		var watchFn cache.WatchFuncWithContext = func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			return wi.Watch(ctx, o)
		}
		var opt *optionalKind
		if kinds[k].absent != nil {
			opt = &optionalKind{key: k, c: ch.c}
			list, watchFn = opt.list(list), opt.watch(watchFn)
		}
		inf := newInformer(kinds[k].gvr.Resource+" in "+namespace, list, watchFn, &unstructured.Unstructured{}, slimManaged)
		inf.opt = opt
		managed[k] = inf
		all = append(all, inf)
		go inf.inf.RunWithContext(ctx)
	}
	if err := waitSynced(ctx, ch.opts.SyncTimeout, all...); err != nil {
		cancel()
		ch.nsFailedIn, ch.nsFailedAt = namespace, time.Now()
		return nil, fmt.Errorf("%w: %v", errCacheUnusable, err)
	}
	ch.namespace, ch.managed, ch.stopNS = namespace, managed, cancel
	ch.nsFailedIn = ""
	return managed, nil
}

// observe is Observe from the informers, or an error wrapping
// errCacheUnusable when they may not be trusted now.
func (ch *Cache) observe(ctx context.Context, namespace string, pools []spec.NodePool) (Observation, error) {
	managed, err := ch.managedFor(namespace)
	if err != nil {
		return Observation{}, err
	}
	if err := ch.awaitWrites(ctx, namespace, managed); err != nil {
		return Observation{}, err
	}
	infs := []*informer{ch.nodes, ch.pods}
	for _, k := range managedKinds {
		infs = append(infs, managed[k])
	}
	for _, inf := range infs {
		if err := inf.usable(); err != nil {
			return Observation{}, err
		}
	}
	nodeObjs := ch.nodes.inf.GetStore().List()
	nodes := make([]corev1.Node, 0, len(nodeObjs))
	for _, o := range nodeObjs {
		nodes = append(nodes, *o.(*corev1.Node))
	}
	used := map[string]int{}
	for _, o := range ch.pods.inf.GetStore().List() {
		addPodGPUs(used, o.(*corev1.Pod), namespace)
	}
	var objs []unstructured.Unstructured
	for _, k := range managedKinds {
		for _, o := range managed[k].inf.GetStore().List() {
			objs = append(objs, *o.(*unstructured.Unstructured).DeepCopy())
		}
	}
	// A watch that broke while we read leaves a view we cannot vouch for.
	for _, inf := range infs {
		if err := inf.usable(); err != nil {
			return Observation{}, err
		}
	}
	return assemble(nodes, used, objs, namespace, pools)
}

// expectKey names an object Gantry just wrote.
type expectKey struct {
	kind, namespace, name string
}

// expectation is what the cache must show of a write before Observe may
// read it: the object at resourceVersion or later, or (gone) no object
// with that UID.
type expectation struct {
	resourceVersion string
	gone            bool
	uid             types.UID
}

func (ch *Cache) expectWrite(kindKey, namespace, name, rv string) {
	if rv == "" {
		return
	}
	ch.mu.Lock()
	ch.expect[expectKey{kindKey, namespace, name}] = expectation{resourceVersion: rv}
	if inf := ch.managed[kindKey]; inf != nil && inf.opt != nil && ch.namespace == namespace {
		// A write of an optional kind: if the informer found it absent,
		// the cluster serves it now. Look again now, not at the next
		// recheck (a no-op when the informer watches it already).
		inf.opt.recheck()
	}
	ch.mu.Unlock()
}

func (ch *Cache) expectGone(kindKey, namespace, name string, uid types.UID) {
	ch.mu.Lock()
	ch.expect[expectKey{kindKey, namespace, name}] = expectation{gone: true, uid: uid}
	ch.mu.Unlock()
}

// awaitWrites waits, up to WriteTimeout, until the cache shows every write
// Apply made through this client, so that the next plan is not built from
// a view older than Gantry's own last apply (which would re-place a shard
// it just created). On timeout the expectations are dropped and Observe
// lists: the List is read after the writes, so it shows them.
func (ch *Cache) awaitWrites(ctx context.Context, namespace string, managed map[string]*informer) error {
	deadline := time.Now().Add(ch.opts.WriteTimeout)
	for {
		ch.mu.Lock()
		for k, e := range ch.expect {
			inf, ok := managed[k.kind]
			if k.namespace != namespace || !ok || seen(inf, k, e) {
				delete(ch.expect, k)
			}
		}
		left := len(ch.expect)
		if left == 0 {
			ch.mu.Unlock()
			return nil
		}
		if time.Now().After(deadline) {
			clear(ch.expect)
			ch.mu.Unlock()
			return fmt.Errorf("%w: %d of Gantry's writes not seen within %s", errCacheUnusable, left, ch.opts.WriteTimeout)
		}
		ch.mu.Unlock()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func seen(inf *informer, k expectKey, e expectation) bool {
	o, exists, err := inf.inf.GetStore().GetByKey(k.namespace + "/" + k.name)
	if err != nil {
		return false
	}
	if e.gone {
		return !exists || o.(*unstructured.Unstructured).GetUID() != e.uid
	}
	if !exists {
		return false
	}
	got := o.(*unstructured.Unstructured).GetResourceVersion()
	if got == e.resourceVersion {
		return true
	}
	cmp, err := resourceversion.CompareResourceVersion(got, e.resourceVersion)
	return err == nil && cmp > 0
}

// slimNode keeps what gpuNodes reads: labels, unschedulable, taints, GPU
// capacity and allocatable, the Ready condition. Images, addresses,
// managedFields and annotations are most of a real Node's bytes.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil // a DeletedFinalStateUnknown tombstone
	}
	out := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, Labels: n.Labels},
		Spec:       corev1.NodeSpec{Unschedulable: n.Spec.Unschedulable, Taints: n.Spec.Taints},
	}
	keep := func(l corev1.ResourceList) corev1.ResourceList {
		if q, ok := l[planner.GPUResource]; ok {
			return corev1.ResourceList{planner.GPUResource: q}
		}
		return nil
	}
	out.Status.Capacity = keep(n.Status.Capacity)
	out.Status.Allocatable = keep(n.Status.Allocatable)
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	// The images, by digest only: what placement's image locality reads.
	for _, img := range n.Status.Images {
		var names []string
		for _, name := range img.Names {
			if strings.Contains(name, "@sha256:") {
				names = append(names, name)
			}
		}
		if names != nil {
			out.Status.Images = append(out.Status.Images, corev1.ContainerImage{Names: names, SizeBytes: img.SizeBytes})
		}
	}
	return out, nil
}

// slimPod keeps what gpusInUse reads: namespace, the managed-by label,
// node, phase and the containers' GPU requests and limits.
func slimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	out := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion},
		Spec:       corev1.PodSpec{NodeName: p.Spec.NodeName},
		Status:     corev1.PodStatus{Phase: p.Status.Phase},
	}
	if v, ok := p.Labels[planner.LabelManagedBy]; ok {
		out.Labels = map[string]string{planner.LabelManagedBy: v}
	}
	slim := func(cs []corev1.Container) []corev1.Container {
		var out []corev1.Container
		for _, c := range cs {
			g := corev1.Container{RestartPolicy: c.RestartPolicy}
			if q, ok := c.Resources.Requests[planner.GPUResource]; ok {
				g.Resources.Requests = corev1.ResourceList{planner.GPUResource: q}
			}
			if q, ok := c.Resources.Limits[planner.GPUResource]; ok {
				g.Resources.Limits = corev1.ResourceList{planner.GPUResource: q}
			}
			out = append(out, g)
		}
		return out
	}
	out.Spec.Containers = slim(p.Spec.Containers)
	out.Spec.InitContainers = slim(p.Spec.InitContainers)
	return out, nil
}

// slimManaged drops managedFields, which are often half an object's bytes
// and which Observe strips anyway; Apply reads them from a live Get.
func slimManaged(obj any) (any, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		u.SetManagedFields(nil)
	}
	return obj, nil
}

// assemble turns what was read (listed or cached) into an Observation.
func assemble(nodes []corev1.Node, used map[string]int, objs []unstructured.Unstructured, namespace string, pools []spec.NodePool) (Observation, error) {
	var obs Observation
	obs.Nodes, obs.Skipped = gpuNodes(nodes, used, pools)
	for i := range objs {
		u := &objs[i]
		var available *int
		if u.GetKind() == "Deployment" {
			var d appsv1.Deployment
			if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &d); err != nil {
				return obs, fmt.Errorf("observe Deployment %s/%s: %w", u.GetNamespace(), u.GetName(), err)
			}
			obs.Shards = append(obs.Shards, shardStatus(&d))
			// What the cluster reports, read before stripNoise drops the
			// status: 0 when the status has no availableReplicas (none
			// available, or not seen by the deployment controller yet).
			n := int(d.Status.AvailableReplicas)
			available = &n
		}
		rv := u.GetResourceVersion()
		o, err := planner.ObjectFromManifest(stripNoise(u.Object))
		if err != nil {
			return obs, fmt.Errorf("observe %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
		}
		o.Version = rv
		o.Available = available
		obs.Objects = append(obs.Objects, o)
	}
	sort.Slice(obs.Objects, func(i, j int) bool { return obs.Objects[i].ID() < obs.Objects[j].ID() })
	sort.Slice(obs.Shards, func(i, j int) bool { return obs.Shards[i].Name < obs.Shards[j].Name })
	return obs, nil
}

func logCacheFallback(namespace string, err error) {
	slog.Warn("observe: informer cache not usable; listing instead", "namespace", namespace, "reason", err)
}

// absentRecheck is how long the informer of an optional kind that the
// cluster did not serve waits before it asks again (a Watch request).
var absentRecheck = time.Minute

// errKindAppeared ends a watch to make the reflector list again: the kind
// it found absent is served now, and a List (not a watch from nowhere) is
// what fills the store completely.
var errKindAppeared = errors.New("the kind is served now; listing it again")

// optionalKind wraps the ListerWatcher of a kind a CRD defines (one with
// kind.absent set), so that its informer works on a cluster that does not
// serve the kind, or whose RBAC forbids it: the List is empty, and the
// watch a placeholder that sends nothing and ends after absentRecheck (or
// at the reflector's watch timeout, or when Apply wrote the kind), when
// the reflector watches again. Once the Watch succeeds, it ends with
// errKindAppeared and the reflector lists: the store then holds what the
// cluster has. A kind that disappears (the CRD deleted) ends the watch;
// its Watch then fails while the store still holds objects, so the
// reflector lists again and finds it absent.
type optionalKind struct {
	key string // kind key, as in kinds
	c   *Client

	mu     sync.Mutex
	absent bool          // the last List found the kind gone
	poke   chan struct{} // closed to end the current placeholder early
}

func (k *optionalKind) setAbsent(v bool) {
	k.mu.Lock()
	k.absent = v
	k.mu.Unlock()
}

func (k *optionalKind) isAbsent() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.absent
}

// recheck ends the current placeholder watch, if any.
func (k *optionalKind) recheck() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.poke != nil {
		close(k.poke)
		k.poke = nil
	}
}

func (k *optionalKind) list(list cache.ListWithContextFunc) cache.ListWithContextFunc {
	return func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		l, err := list(ctx, o)
		switch {
		case err != nil && kindGone(err):
			k.c.noteKindGone(k.key, err)
			k.setAbsent(true)
			return &unstructured.UnstructuredList{}, nil
		case err == nil:
			k.setAbsent(false)
		}
		return l, err
	}
}

func (k *optionalKind) watch(watchFn cache.WatchFuncWithContext) cache.WatchFuncWithContext {
	return func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		w, err := watchFn(ctx, o)
		streaming := o.SendInitialEvents != nil && *o.SendInitialEvents
		switch {
		case streaming:
			// A watch-list, in place of the List: its initial events
			// fill the store. When it fails, the reflector lists.
			if err == nil {
				k.setAbsent(false)
			}
			return w, err
		case err == nil && k.isAbsent():
			w.Stop()
			return nil, errKindAppeared
		case err != nil && kindGone(err) && k.isAbsent():
			return k.placeholder(ctx, o), nil
		}
		return w, err
	}
}

// placeholder is the watch of a kind the cluster does not serve.
func (k *optionalKind) placeholder(ctx context.Context, o metav1.ListOptions) *placeholderWatch {
	d := absentRecheck
	if o.TimeoutSeconds != nil && time.Duration(*o.TimeoutSeconds)*time.Second < d {
		d = time.Duration(*o.TimeoutSeconds) * time.Second
	}
	p := &placeholderWatch{ch: make(chan watch.Event), stop: make(chan struct{})}
	poke := make(chan struct{})
	k.mu.Lock()
	if k.poke != nil {
		close(k.poke)
	}
	k.poke = poke
	k.mu.Unlock()
	go func() {
		defer close(p.ch)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-poke:
		case <-p.stop:
		case <-ctx.Done():
		}
	}()
	return p
}

// placeholderWatch sends no events and ends when told.
type placeholderWatch struct {
	ch   chan watch.Event
	stop chan struct{}
	once sync.Once
}

func (p *placeholderWatch) ResultChan() <-chan watch.Event { return p.ch }

func (p *placeholderWatch) Stop() { p.once.Do(func() { close(p.stop) }) }
