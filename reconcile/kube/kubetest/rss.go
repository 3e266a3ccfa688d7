package kubetest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// RSS is the resident memory, in bytes, of the cluster's kube-apiserver
// (0 while stopped) and etcd, read from /proc (Linux only). The processes
// are found by the directories their command lines name.
func (c *Cluster) RSS() (apiserver, etcd int64, err error) {
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil || len(procs) == 0 {
		return 0, 0, fmt.Errorf("kubetest: no /proc to read memory from")
	}
	apiArg := []byte("--cert-dir=" + filepath.Join(c.Dir, "certs"))
	etcdArg := []byte("--data-dir=" + filepath.Join(c.Dir, "etcd"))
	for _, p := range procs {
		cmd, err := os.ReadFile(p)
		if err != nil {
			continue // gone since the glob
		}
		args := bytes.Split(cmd, []byte{0})
		var n *int64
		switch {
		case len(args) > 0 && bytes.HasSuffix(args[0], []byte("kube-apiserver")) && hasArg(args, apiArg):
			n = &apiserver
		case len(args) > 0 && bytes.HasSuffix(args[0], []byte("etcd")) && hasArg(args, etcdArg):
			n = &etcd
		default:
			continue
		}
		rss, err := vmRSS(filepath.Join(filepath.Dir(p), "status"))
		if err != nil {
			return 0, 0, err
		}
		*n += rss
	}
	return apiserver, etcd, nil
}

func hasArg(args [][]byte, want []byte) bool {
	for _, a := range args {
		if bytes.Equal(a, want) {
			return true
		}
	}
	return false
}

// vmRSS reads VmRSS from a /proc/PID/status file.
func vmRSS(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, nil // exited since: no memory
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("kubetest: %s: %w", path, err)
			}
			return kb << 10, nil
		}
	}
	return 0, nil
}
