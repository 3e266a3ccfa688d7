// Package dirtarget is the embedded Kubernetes target: objects are written
// as YAML files into a directory, and the files found there are read back
// as the observed state. It lets `gantry plan` and `gantry run` work on a
// laptop with no cluster, using the same planner and executor.
//
// Layout: one file per object, named <kind>-<namespace>-<name>.yaml in
// lower case. Files are written atomically (temp file, then rename), so a
// crash never leaves half an object. Files that are not YAML manifests, or
// manifests without Gantry's managed-by label, are ignored and never
// deleted.
package dirtarget
