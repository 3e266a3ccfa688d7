package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gantry-dev/gantry/reconcile"
)

// parseShard reads run --shard: "INDEX/COUNT", or "auto/COUNT", where the
// index is the ordinal that ends the pod's name (a StatefulSet's pod
// gantry-2 is shard 2): POD_NAME (set it from metadata.name with the
// downward API), else the hostname, which in a StatefulSet's pod is the
// pod's name. "" is no sharding (nil). getenv and hostname are os.Getenv
// and os.Hostname but for tests.
func parseShard(v string, getenv func(string) string, hostname func() (string, error)) (*reconcile.Shard, error) {
	if v == "" {
		return nil, nil
	}
	idx, cnt, ok := strings.Cut(v, "/")
	if !ok {
		return nil, fmt.Errorf("--shard %s: want INDEX/COUNT, such as 0/3 (or auto/3 in a StatefulSet)", v)
	}
	n, err := strconv.Atoi(cnt)
	if err != nil {
		return nil, fmt.Errorf("--shard %s: the count %q is not a number", v, cnt)
	}
	if n < 1 || n > reconcile.MaxShards {
		return nil, fmt.Errorf("--shard %s: the count must be between 1 and %d", v, reconcile.MaxShards)
	}
	var i int
	if idx == "auto" {
		name, from := getenv("POD_NAME"), "POD_NAME"
		if name == "" {
			from = "the hostname"
			if name, err = hostname(); err != nil {
				return nil, fmt.Errorf("--shard %s: no POD_NAME and no hostname: %w", v, err)
			}
		}
		i, ok = ordinal(name)
		if !ok {
			return nil, fmt.Errorf("--shard %s: %s %q does not end in -ORDINAL (a StatefulSet's pod name such as gantry-2)", v, from, name)
		}
	} else if i, err = strconv.Atoi(idx); err != nil {
		return nil, fmt.Errorf("--shard %s: the index %q is not a number or auto", v, idx)
	}
	if i < 0 {
		return nil, fmt.Errorf("--shard %s: the index must not be negative", v)
	}
	if i >= n {
		what := "index"
		if idx == "auto" {
			what = fmt.Sprintf("the pod's ordinal %d", i)
		}
		return nil, fmt.Errorf("--shard %s: %s must be below the count (shards are numbered 0 to %d)", v, what, n-1)
	}
	return &reconcile.Shard{Index: i, Count: n}, nil
}

// ordinal is the number after the last "-" of a pod name.
func ordinal(name string) (int, bool) {
	k := strings.LastIndexByte(name, '-')
	if k < 0 || k == len(name)-1 {
		return 0, false
	}
	i, err := strconv.Atoi(name[k+1:])
	if err != nil || i < 0 || strings.HasPrefix(name[k+1:], "+") {
		return 0, false
	}
	return i, true
}

// shardLease is the Lease a shard campaigns on: the --leader-election-id
// plus "-INDEX", so that shards never wait on each other while two
// replicas of one shard never act at once. Unsharded, the id itself.
func shardLease(id string, s *reconcile.Shard) string {
	if s == nil {
		return id
	}
	return id + "-" + strconv.Itoa(s.Index)
}

// registerShardMetric adds gantry_shard_releases{shard, count}: how many
// releases of the specs this shard owns. Its labels say which shard this
// process is; one series per process, so a fleet has Count of them.
func registerShardMetric(reg prometheus.Registerer, e *reconcile.Engine) {
	if e.Shard == nil {
		return
	}
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "gantry_shard_releases",
		Help:        "Releases of the specs this shard owns (gantry run --shard); the labels say which shard this process is.",
		ConstLabels: prometheus.Labels{"shard": strconv.Itoa(e.Shard.Index), "count": strconv.Itoa(e.Shard.Count)},
	}, func() float64 {
		if st := e.Status().Shard; st != nil {
			return float64(len(st.Releases))
		}
		return 0
	}))
}
