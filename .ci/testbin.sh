#!/usr/bin/env bash
# testbin.sh - provide the control-plane binaries that reconcile/kube's
# integration tests run against (envtest: etcd + kube-apiserver, no kubelet).
#
# Both binaries are compiled from source fetched through the Go module proxy
# (nothing else is downloaded) into a cache directory outside the clone,
# keyed by version. The first build costs ~10-12 min of CPU on 2 cores; a warm
# run only checks the cached binaries' versions and takes well under a second.
#
#   .ci/testbin.sh           build if needed, print the directory on stdout
#   .ci/testbin.sh --check   print the directory if it is complete, exit 1 otherwise
#
#   export KUBEBUILDER_ASSETS="$(.ci/testbin.sh)"
#   go test ./reconcile/kube/...
#
# Environment: GANTRY_KUBE_VERSION (v1.37.2), GANTRY_ETCD_VERSION (v3.6.16),
# XDG_CACHE_HOME. Build logs go to stderr; only the directory goes to stdout.
set -euo pipefail

kube_version=${GANTRY_KUBE_VERSION:-v1.37.2}
etcd_version=${GANTRY_ETCD_VERSION:-v3.6.16}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/gantry-test
bindir=$cache/testbin/kube-apiserver-${kube_version}_etcd-${etcd_version}

say() { printf 'testbin: %s\n' "$*" >&2; }
fail() { say "error: $*"; exit 1; }

# The builds must not see the surrounding project (go.work, -mod=readonly from
# .ci/run) and must keep paths so that the build cache is reused.
go_isolated() { env GOWORK=off GOFLAGS=-buildvcs=false go "$@"; }

etcd_ok() {
  [ -x "$bindir/etcd" ] &&
    [ "$("$bindir/etcd" --version 2>/dev/null | sed -n 1p)" = "etcd Version: ${etcd_version#v}" ]
}
apiserver_ok() {
  [ -x "$bindir/kube-apiserver" ] &&
    [ "$("$bindir/kube-apiserver" --version 2>/dev/null)" = "Kubernetes ${kube_version}" ]
}

if [ "${1:-}" = "--check" ]; then
  etcd_ok && apiserver_ok || exit 1
  echo "$bindir"
  exit 0
fi
[ $# -eq 0 ] || fail "usage: $0 [--check]"

command -v go >/dev/null || fail "go is not on PATH"
mkdir -p "$bindir"

# One builder at a time per version directory (parallel CI jobs, two clones).
exec 8>"$bindir/.lock"
flock 8

# etcd's server module carries replace directives, so `go install mod@ver`
# refuses it. Build it as a tool dependency of a scratch module instead.
build_etcd() {
  local scratch=$bindir/.src/etcd start=$SECONDS
  say "building etcd ${etcd_version}"
  rm -rf "$scratch" && mkdir -p "$scratch"
  cat >"$scratch/go.mod" <<EOF
module gantry.local/testbin/etcd

go 1.26.0
EOF
  (
    cd "$scratch"
    go_isolated get -tool "go.etcd.io/etcd/server/v3@${etcd_version}"
    go_isolated build -ldflags "-s -w" -o "$bindir/etcd.partial" go.etcd.io/etcd/server/v3
  ) >&2
  mv -f "$bindir/etcd.partial" "$bindir/etcd"
  say "etcd ready after $((SECONDS - start))s"
}

# k8s.io/kubernetes points its staging repos (k8s.io/api, k8s.io/apiserver, ...)
# at ./staging/src/... . A scratch module replaces each of them with the
# published v0.MINOR.PATCH tag that matches the release.
build_apiserver() {
  local scratch=$bindir/.src/kube-apiserver start=$SECONDS upstream staged minor ld
  say "building kube-apiserver ${kube_version} (the slow one: ~10 min on 2 cores)"
  rm -rf "$scratch" && mkdir -p "$scratch"
  upstream=$(go_isolated mod download -json "k8s.io/kubernetes@${kube_version}" |
    awk -F'"' '$2 == "GoMod" { print $4 }')
  [ -f "$upstream" ] || fail "no go.mod for k8s.io/kubernetes@${kube_version}"
  staged=v0.${kube_version#v1.}
  minor=$(cut -d. -f2 <<<"$kube_version")
  {
    printf 'module gantry.local/testbin/kube\n\ngo 1.26.0\n'
    awk -v v="$staged" '
      /^replace \(/ { inblock = 1; next }
      inblock && /^\)/ { inblock = 0 }
      inblock && $2 == "=>" && $3 ~ /^\.\/staging\// { printf "replace %s => %s %s\n", $1, $1, v }
    ' "$upstream"
  } >"$scratch/go.mod"
  grep -q '^replace k8s.io/apiserver ' "$scratch/go.mod" || fail "found no staging replaces in $upstream"
  ld="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=${kube_version} -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor}"
    ld+=" -X $pkg.gitTreeState=clean"
  done
  (
    cd "$scratch"
    go_isolated get -tool "k8s.io/kubernetes/cmd/kube-apiserver@${kube_version}"
    go_isolated build -ldflags "$ld" -o "$bindir/kube-apiserver.partial" k8s.io/kubernetes/cmd/kube-apiserver
  ) >&2
  mv -f "$bindir/kube-apiserver.partial" "$bindir/kube-apiserver"
  say "kube-apiserver ready after $((SECONDS - start))s"
}

etcd_ok || build_etcd
apiserver_ok || build_apiserver
etcd_ok && apiserver_ok || fail "binaries in $bindir do not report ${kube_version} / ${etcd_version}"
rm -rf "$bindir/.src"
echo "$bindir"
