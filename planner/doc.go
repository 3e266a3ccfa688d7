// Package planner turns what the specs want and what the world has into a
// plan: a value that says, in a fixed order, what to build and which
// Kubernetes objects to create, update or delete, and why.
//
// What it promises:
//
//   - Build does no I/O and starts no goroutines. It is a function of its
//     arguments: the same Config and Observed give the same Plan, byte for
//     byte once rendered.
//   - An unchanged world gives an empty plan, and the Git revision alone
//     never causes an update.
//   - Actions are ordered: for each release by name, quantize, gate, push,
//     then its objects (Service, then shard Deployments by node); deletions
//     of removed releases come last. A Deployment never references a model
//     image that an earlier action has not pushed.
//   - Objects are rendered here, as plain JSON-shaped maps, so that the
//     field-level diff, the YAML written by the dir target and the
//     server-side apply to a cluster all use one rendering.
//   - A plan renders three ways (text, JSON, Markdown) without changing it.
//
// Content addressing: an artifact's key is a hash of the source model
// digest, the quantize parameters, the packaging and QuantizerVersion. When
// Observed says the registry has the key, there is no quantize or push.
package planner
