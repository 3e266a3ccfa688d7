// Package spec is Gantry's release language: the HCL schema of a config
// repository, loading a directory tree of *.hcl files into a Config,
// validation, canonical formatting and programmatic edits.
//
// What it promises:
//
//   - Load reads files only. It never touches the network, the cluster or Git.
//   - Files are loaded in a stable order (lexical by slash-separated path), so
//     the same tree always gives the same Config and the same diagnostics.
//   - Every problem is reported in one pass as hcl.Diagnostics that carry
//     source ranges. Diagnostics are never flattened into strings here; the
//     caller prints them with hcl.NewDiagnosticTextWriter and Config.Files.
//   - A Config returned without error diagnostics is complete: defaults are
//     filled in, quantities and durations are parsed, and every reference
//     (pools, files) has been resolved.
//   - Format rewrites files canonically with hclwrite and keeps comments.
//
// The top-level blocks are gantry (settings, at most one), variable, locals,
// node_pool, node, release and cluster. Without cluster blocks Gantry
// drives one target and every fleet attribute (a node's cluster, a
// release's clusters, cluster_selector and per-cluster replicas, a
// rollout's waves) is an error; with them, each names the cluster blocks
// it is about. Expressions may use var.NAME, local.NAME and
// the common functions of the cty standard library (lower, format, merge,
// concat, ...), as Terraform users expect. See the README for the reference.
package spec
