package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	"k8s.io/client-go/rest"

	"github.com/gantry-dev/gantry/reconcile"
	"github.com/gantry-dev/gantry/reconcile/dirtarget"
	"github.com/gantry-dev/gantry/reconcile/kube"
	"github.com/gantry-dev/gantry/reconcile/registry"
	"github.com/gantry-dev/gantry/spec"
)

// fleetTargets makes the Target of one cluster block, for specs with
// cluster blocks: with target "kube" a cluster reached by the block's
// kubeconfig and context (or in-cluster), with "dir:PATH" the directory
// PATH/<cluster>, whose nodes are the node blocks that name the cluster.
func fleetTargets(target, state string, force bool) (func(ctx context.Context, c spec.Cluster) (reconcile.Target, error), error) {
	if target == "kube" {
		return func(ctx context.Context, c spec.Cluster) (reconcile.Target, error) {
			rc, err := clusterRESTConfig(c)
			if err != nil {
				return nil, err
			}
			client, err := kube.New(rc)
			if err != nil {
				return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
			}
			return &reconcile.KubeTarget{Client: client, Force: force}, nil
		}, nil
	}
	dir, ok := strings.CutPrefix(target, "dir:")
	if !ok || dir == "" {
		return nil, fmt.Errorf("--target %q: want kube or dir:PATH", target)
	}
	return func(ctx context.Context, c spec.Cluster) (reconcile.Target, error) {
		return reconcile.DirTarget{Target: dirtarget.Target{Dir: filepath.Join(dir, c.Name), CacheDir: filepath.Join(state, "work")}}, nil
	}, nil
}

// clusterRESTConfig is the client config of a cluster block.
func clusterRESTConfig(c spec.Cluster) (*rest.Config, error) {
	rc, err := kube.RESTConfig(c.Kubeconfig, c.Context, c.InCluster)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	return rc, nil
}

// mirrorStores makes the store of a registry mirror: the registry, or
// with a dir target (the embedded defaults, no network) an OCI layout
// per mirror under <state>/mirrors, as model images go to <state>/oci.
func mirrorStores(target, state string, insecure bool) func(string) registry.Store {
	if strings.HasPrefix(target, "dir:") {
		return func(m string) registry.Store {
			return registry.NewLayout(filepath.Join(state, "mirrors", nonPath.ReplaceAllString(m, "_")))
		}
	}
	return func(string) registry.Store { return registry.NewRemote(registry.Options{Insecure: insecure}) }
}

var nonPath = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// leaseConfig is where a fleet's daemon holds its Lease: the cluster
// gantry { lease_cluster } names, else the daemon's own (its kubeconfig
// or service account), else none (no leader election).
func leaseConfig(cfg *spec.Config, k *kubeFlags) (*rest.Config, error) {
	if name := cfg.Settings.LeaseCluster; name != "" {
		c, ok := cfg.Cluster(name)
		if !ok {
			return nil, fmt.Errorf("lease_cluster %q is not a cluster block", name)
		}
		return clusterRESTConfig(*c)
	}
	rc, err := k.restConfig()
	if err != nil {
		return nil, nil // nowhere to hold a Lease: a single daemon
	}
	return rc, nil
}
