// Package schedule decides on which GPU nodes the replicas of model releases
// run: weighted least connections with fit constraints, moving as few
// running replicas as possible.
//
// Place is a pure function: no I/O, no goroutines, no clock, and it does not
// modify its Problem. The planner turns its result into changes.
//
// # What it promises
//
//   - Deterministic: the same Problem gives the same Result whatever the
//     order of Nodes and whatever the iteration order of the maps. Nodes
//     are compared by ID (Node.ID: the name, or "CLUSTER/NAME" for a node
//     of a fleet's cluster); if two Nodes share an ID, one of them is used,
//     chosen by comparing all their fields, and the other ignored.
//   - Stable: re-planning an unchanged world moves nothing (Placements fed
//     back as Current give the same Placements), and scaling a release from
//     3 to 5 adds 2 replicas without moving the 3 as long as they still fit.
//   - Fast: placing 100,000 replicas on 10,000 nodes takes tens of milliseconds
//     (see BENCHMARKS.md); the cost grows with replicas × log(nodes), plus
//     one pass over the eligible nodes per class of requests (below).
//
// # Score and feasibility
//
// A node's score is
//
//	(Connections + ReplicaLoad × replicas on it of all requested releases) / weight
//
// where weight is the node's Pool.Weight (1 when the node has no pool, the
// pool is unknown, or the weight is not a positive finite number) times its
// cluster's Problem.ClusterWeights entry (1 when absent or not a positive
// finite number). Lower is better; ties go to the smaller node ID. A NaN Connections counts as +Inf
// (unknown load is least preferred) and a ReplicaLoad that is not a positive
// finite number counts as 1. Replicas of releases in Current that are not
// requested are being removed and count as no load.
//
// A node is feasible for one more replica of a Request when, checked in this
// order (an unplaced replica reports each node's first failure):
//
//  0. its Unusable is nil. An unusable node (cordoned, not ready, …) is
//     infeasible for every request: it keeps no replica, takes none, and
//     none of its GPUs, load or images count anywhere; it appears only
//     in unplaced requests' rejections, with its Unusable reason;
//  1. its cluster is in Request.Clusters, or Request.Clusters is empty
//     (ClusterNotSelected);
//  2. its pool is in Request.Pools, or Request.Pools is empty;
//  3. its GPUMemory is at least Request.GPUMemory (skipped for CPU-only
//     replicas, GPUs == 0, for which memory per GPU means nothing);
//  4. its cluster holds fewer than Request.MaxPerCluster replicas of the
//     release (0 = no limit; MaxPerClusterReached);
//  5. it holds fewer than Request.MaxPerNode replicas of the release (0 =
//     no limit);
//  6. its free GPUs are at least Request.GPUs, where free = GPUs - Used -
//     the pool's Reserve - GPUs of replicas placed on it in this Problem.
//     CPU-only replicas always pass.
//
// The reserve is held back from every replica this package places, kept or
// new, so the same rule holds everywhere: a node never gives its reserve to
// Gantry's steady state, and the GPUs a rolling update surges into are
// always there. Raising a pool's reserve therefore evicts kept replicas
// that no longer fit, and they are re-placed like any other.
//
// Negative counts (Replicas, GPUs, MaxPerNode, MinPerCluster,
// MaxPerCluster, Node.GPUs, Node.Used, Reserve, GPUMemory) are treated as 0.
//
// # Fleets
//
// A node of a fleet names its cluster (Node.Cluster). Its identity is
// (cluster, name), and everything keyed by node is keyed by Node.ID:
// Placement and Current keys, Rejection.Node, Result.ImageLocal. Two
// clusters may each have a node "gpu-a"; they are two nodes. Without any
// Cluster set, IDs are names and nothing differs from a single cluster.
//
// A Request may name the clusters it runs in (Request.Clusters; empty:
// all) and bound its replicas per cluster. MinPerCluster applies to each
// named cluster, or to every cluster of Nodes (unusable-only ones too)
// when none is named; a minimum above MaxPerCluster aims at the maximum
// (and still reports the cluster short of the minimum). Min ×
// clusters above Replicas is the caller's to reject: Place fills the
// minimums in cluster name order until the replicas run out.
// Replicas per cluster is MinPerCluster = MaxPerCluster = N with
// Replicas = N × clusters.
//
// Placement is still one greedy pass per request, in two phases: first,
// cluster by cluster in name order, the replicas a cluster lacks for its
// minimum (kept ones count), each on the best feasible node of that
// cluster; then the rest over every allowed cluster below its maximum.
// A cluster that cannot hold its minimum (no fitting node) is listed in
// Result.Short, and the replicas it could not take are placed in the
// second phase wherever they fit: capacity is never left unused for the
// sake of a minimum. A release with no replicas is short nowhere.
//
// Each class heap (below) is split per cluster, and the second phase picks
// among the clusters' heap tops through a small heap of them, refreshed as
// lazily as the class heaps: a cluster at its maximum leaves it without
// its nodes being looked at. The cost stays replicas × log(nodes), plus
// replicas × log(clusters) for requests spanning several clusters.
//
// # Order of work
//
// Keep phase, for all requests before any new placement, so that one
// release's new replicas cannot take the GPUs another release's running
// replicas sit on:
//
//   - Current replicas on nodes that no longer exist or are unusable, or
//     that fail the cluster, pool or memory rule, are dropped; a count
//     above MaxPerNode is cut to it. What is left counts as load from here
//     on.
//   - Then, request by request in slice order: replicas that no longer fit
//     the node's free GPUs are dropped (earlier requests keep theirs first);
//     a cluster holding more than MaxPerCluster sheds the excess (clusters
//     in name order, each trimmed as below); if more remain than requested,
//     the excess is removed one replica at a time from the node with the
//     highest score, re-scoring after each, ties to the larger node ID (the
//     reverse of placement order), from clusters above their minimum while
//     there are any. With Spread, nodes holding two or more replicas of the
//     release are trimmed first.
//   - Last, minimums: when a release's kept replicas leave too few missing
//     to bring its clusters below MinPerCluster up to it, as far as those
//     clusters have room after every keep, kept replicas of clusters above
//     the minimum are trimmed (same order) until they do. A cluster short
//     for want of GPUs moves nothing, so a replan of the result moves
//     nothing either. Trims give GPUs back, so this repeats until a round
//     trims nothing.
//
// Place phase, request by request in slice order: each missing replica goes
// to the feasible node with the least score (the minimums first; see
// Fleets), and counts as load at once, so a release spreads over equally
// loaded nodes. With Spread, any feasible
// node not yet holding the release is preferred over every node that holds
// it; Spread does not move kept replicas.
//
// Requests with the same pools, the same memory tier (the smallest node
// memory size that fits) and the same GPUs per replica share one heap of
// eligible nodes per cluster, built on first use. Entries are refreshed lazily when they
// reach the top: during placement scores only grow, so a stale entry never
// sits above its true place.
//
// # Results
//
// Result.Placements has an entry for every requested release, possibly
// empty. A later Request for a release already requested earlier in the
// slice is ignored. When replicas of a release cannot all be placed,
// Result.Unplaced says how many and, for every node (sorted by ID), why it
// was rejected,
// as of the moment that release's placement gave up (later requests may
// still take what is left); Unplaced.String summarises it like the
// kube-scheduler, counting every node, unusable ones included: "0/5 nodes
// are available: 3 node(s) were unschedulable, 1 Insufficient
// nvidia.com/gpu, 1 node(s) had untolerated taint {dedicated: train}";
// in a fleet, e.g. "0/6 nodes are available: 3 node(s) were in clusters
// the release does not run in, 2 node(s) were in clusters at
// max_per_cluster for the release, 1 node(s) were unschedulable".
// Result.Short lists, per release with a MinPerCluster, the clusters
// holding fewer replicas than it, sorted by release then cluster.
package schedule
