// Package e2e holds Gantry's end-to-end tests: the gantry binary against a
// bare Git repository served over smart HTTP by git http-backend, Debian's
// docker-registry and a real kube-apiserver with etcd (envtest). It has no
// code of its own.
package e2e
