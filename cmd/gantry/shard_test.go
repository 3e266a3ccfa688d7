package main

import (
	"errors"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	sigsyaml "sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/reconcile"
)

func TestParseShard(t *testing.T) {
	env := func(pod string) func(string) string {
		return func(k string) string {
			if k == "POD_NAME" {
				return pod
			}
			return ""
		}
	}
	host := func(h string, err error) func() (string, error) { return func() (string, error) { return h, err } }
	for _, tc := range []struct {
		flag, pod, host string
		want            *reconcile.Shard
		err             string
	}{
		{flag: "", want: nil},
		{flag: "0/1", want: &reconcile.Shard{Index: 0, Count: 1}},
		{flag: "1/2", want: &reconcile.Shard{Index: 1, Count: 2}},
		{flag: "2/2", err: "--shard 2/2: index must be below the count (shards are numbered 0 to 1)"},
		{flag: "-1/2", err: "--shard -1/2: the index must not be negative"},
		{flag: "1", err: "--shard 1: want INDEX/COUNT, such as 0/3"},
		{flag: "a/2", err: `--shard a/2: the index "a" is not a number or auto`},
		{flag: "0/x", err: `--shard 0/x: the count "x" is not a number`},
		{flag: "0/0", err: "--shard 0/0: the count must be between 1 and 1024"},
		{flag: "0/5000", err: "--shard 0/5000: the count must be between 1 and 1024"},
		{flag: "auto/3", pod: "gantry-2", want: &reconcile.Shard{Index: 2, Count: 3}},
		{flag: "auto/3", host: "gantry-1", want: &reconcile.Shard{Index: 1, Count: 3}},
		{flag: "auto/3", pod: "gantry-0", host: "gantry-1", want: &reconcile.Shard{Index: 0, Count: 3}},
		{flag: "auto/3", pod: "gantry-3", err: "--shard auto/3: the pod's ordinal 3 must be below the count"},
		{flag: "auto/3", pod: "gantry-7d9f8-x2kq", err: `--shard auto/3: POD_NAME "gantry-7d9f8-x2kq" does not end in -ORDINAL`},
		{flag: "auto/3", host: "laptop", err: `--shard auto/3: the hostname "laptop" does not end in -ORDINAL`},
		{flag: "auto/3", pod: "gantry-+1", err: "does not end in -ORDINAL"},
	} {
		got, err := parseShard(tc.flag, env(tc.pod), host(tc.host, nil))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("--shard %s (pod %q, host %q): error %v, want %q", tc.flag, tc.pod, tc.host, err, tc.err)
			}
			continue
		}
		if err != nil || (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("--shard %s (pod %q, host %q): %v, %v; want %v", tc.flag, tc.pod, tc.host, got, err, tc.want)
		}
	}
	if _, err := parseShard("auto/2", env(""), host("", errors.New("no uts"))); err == nil || !strings.Contains(err.Error(), "no POD_NAME and no hostname") {
		t.Errorf("no hostname: %v", err)
	}
}

func TestShardLease(t *testing.T) {
	if got := shardLease("gantry", nil); got != "gantry" {
		t.Errorf("unsharded lease %q", got)
	}
	if got := shardLease("gantry", &reconcile.Shard{Index: 2, Count: 3}); got != "gantry-2" {
		t.Errorf("lease of shard 2/3: %q", got)
	}
}

// TestRunShardFlagErrors: a bad --shard stops run before it reads
// anything, with the flag in the message.
func TestRunShardFlagErrors(t *testing.T) {
	code, _, errs := gantry(t, "run", "--once", "--shard", "2/2", "--repo", quickstart, "--state-dir", t.TempDir())
	if code == 0 || !strings.Contains(errs, "--shard 2/2: index must be below the count") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

// TestDeployShardedExampleArgs: the StatefulSet in examples/deploy/sharded
// passes flags this gantry knows, and --shard resolves pod gantry-N of it
// to shard N of replicas.
func TestDeployShardedExampleArgs(t *testing.T) {
	const path = "../../examples/deploy/sharded/statefulset.yaml"
	args := exampleArgs(t, path)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			Replicas int `json:"replicas"`
		} `json:"spec"`
	}
	if err := sigsyaml.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	i := slices.Index(args, "--shard")
	if i < 0 {
		t.Fatalf("args %q lack --shard", args)
	}
	for ord := range s.Spec.Replicas {
		pod := s.Metadata.Name + "-" + strconv.Itoa(ord)
		got, err := parseShard(args[i+1], func(string) string { return pod }, os.Hostname)
		if err != nil || got.Index != ord || got.Count != s.Spec.Replicas {
			t.Errorf("pod %s: --shard %s is %v, %v; want %d/%d", pod, args[i+1], got, err, ord, s.Spec.Replicas)
		}
	}
	pod := s.Metadata.Name + "-" + strconv.Itoa(s.Spec.Replicas)
	if _, err := parseShard(args[i+1], func(string) string { return pod }, os.Hostname); err == nil {
		t.Errorf("pod %s, one more than replicas, got a shard", pod)
	}
}
