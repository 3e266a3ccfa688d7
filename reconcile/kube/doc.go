// Package kube is Gantry's Kubernetes driver: it observes a cluster (GPU
// nodes, the GPUs other workloads hold, the objects Gantry manages) and
// carries out a plan's object actions by server-side apply, then waits for
// the shards to roll out. Objects are rendered by planner.Render, so the
// plan's field diffs, the dir target and the cluster all see one rendering.
//
// The API:
//
//	c, err := kube.New(restConfig)                          // options: WithPollInterval, WithRateLimit, WithRequestTimeout
//	obs, err := c.Observe(ctx, cfg.Settings.Namespace, cfg.Pools)
//	observed := planner.Observed{Objects: obs.Objects, Nodes: obs.Nodes, Artifacts: ...}
//	plan, err := planner.Build(*cfg, observed)
//	cs, err := c.Apply(ctx, cfg.Settings.Namespace, plan.Actions, kube.ApplyOptions{Force: false})
//	shards, err := c.WaitRollout(ctx, objects, 10*time.Minute)
//	res, err := c.Prestage(ctx, namespace, release, *action.Prestage) // before a rollout step's shards
//
// What it promises:
//
//   - Observe reads with one List per kind (Nodes, Pods, Deployments,
//     Services, HTTPRoutes; paged), never one call per release, or, after
//     StartCache, from shared informers with no request at all. Its rules
//     for GPU nodes, pools and used GPUs are on Observe. A Deployment's
//     status.availableReplicas comes as planner.Object.Available; the
//     status itself is not in the observed manifest.
//   - HTTPRoutes (gateway.networking.k8s.io/v1, for traffic = "gateway")
//     are applied, observed and pruned like Services. A cluster without
//     the Gateway API CRDs (or whose RBAC forbids HTTPRoutes) observes
//     none and works as before; applying an HTTPRoute there fails before
//     anything is applied, with ErrNoHTTPRouteCRD. The informer cache
//     asks again every minute, and at once when Apply writes one, so a
//     CRD installed later is picked up without a restart.
//   - Prestage pulls a model image on nodes with short-lived pods
//     (labelled gantry.dev/prestage=true) before shards need it. They
//     are Pods, which Observe does not list as managed objects and prune
//     never deletes; Prestage deletes the ones that finished.
//   - Apply uses server-side apply with field manager "gantry". It applies
//     nothing that a dry run shows unchanged, so an unchanged world keeps
//     its resourceVersions, and re-running Apply on the same actions is a
//     no-op. The namespace goes first, deletions last; it stops at the
//     first error and returns the partial ChangeSet with the error.
//   - Gantry only changes and deletes objects labelled
//     app.kubernetes.io/managed-by=gantry. An unlabelled object in the way
//     is an *UnmanagedError, never taken over, even with Force.
//   - Drift is healed: a field Gantry renders that someone changed by hand
//     (kubectl scale, edit, patch: non-apply field managers) shows in the
//     next plan, and Apply sets it back. A field another server-side apply
//     manager declares is a *ConflictError naming the fields and managers;
//     ApplyOptions.Force takes it over.
//   - WaitRollout reports each shard progressing, healthy or degraded from
//     the Deployment's status and conditions, within a timeout, with
//     ErrDegraded and ErrRolloutTimeout for callers that branch.
//   - Every error names the object it is about and wraps the API error.
//
// Tests run against a real kube-apiserver and etcd through envtest, started
// once in TestMain, one namespace per test:
//
//	export KUBEBUILDER_ASSETS="$(.ci/testbin.sh)"   # builds both once (~11 min), then instant
//	go test ./reconcile/kube
//
// Without KUBEBUILDER_ASSETS the integration tests fail, saying so, unless
// -short skips them. Golden renderings: go test ./reconcile/kube -update.
//
// The informer cache (StartCache; gantry run starts it, one-shot commands
// list). Informers watch Nodes, bound unfinished Pods (field selector) and,
// from the first Observe of a namespace, its Deployments, Services and
// HTTPRoutes with app.kubernetes.io/managed-by=gantry. Transforms keep only what Observe
// reads (no managedFields, node images, pod specs beyond GPU requests).
// Writes never trust it: Apply still gets the live object, dry-runs and
// applies, and deletes with a UID precondition after a live Get. Why a
// stale cache cannot do harm:
//
//   - Observe reads the cache only when every informer has synced and has
//     its watch open now. Before the first sync, while a watch is down (the
//     reflector retries refused connections silently, so the ListerWatcher
//     reports opens and closes itself), or when a namespace's informers did
//     not sync, Observe lists; if the List fails the reconcile fails. A
//     plan is never built from a partial view, so prune never acts on
//     objects the cache has not seen yet. A cache that synced is complete,
//     only possibly late.
//   - Late by Gantry's own writes: Apply records the resourceVersion it
//     wrote (or the UID it deleted) and the next Observe waits, up to
//     CacheOptions.WriteTimeout, until the cache shows it, else lists.
//     Without this, a shard just created but not yet seen would be placed
//     again elsewhere and the first one pruned a reconcile later.
//   - Late by others' writes: the same race a List has. A stale object
//     planned for update is a dry-run that shows no change; one planned
//     for delete is re-read live (gone: unchanged; unlabelled: refused); a
//     missing one planned for create is a server-side apply of what is
//     already there. The next reconcile sees the watch's news.
//
// Not here yet: the tag to digest resolution of runtime images (planner renders the runtime
// image as the spec writes it), and a spec attribute for Force.
package kube
