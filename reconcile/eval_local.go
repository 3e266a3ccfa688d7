package reconcile

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gantry-dev/gantry/spec"
)

// Environment variables an evaluator gets.
const (
	EnvModelDir = "GANTRY_MODEL_DIR"
	EnvModel    = "GANTRY_MODEL"
	EnvMetrics  = "GANTRY_METRICS"
)

// inheritedEvalEnv are the only variables of the daemon's environment a
// local evaluator inherits: the daemon's may hold credentials
// (GANTRY_GIT_TOKEN, registry passwords) that are not the evaluator's.
var inheritedEvalEnv = []string{"PATH", "HOME"}

// runLocalEval runs ev.Command in dir (the specs' directory) on the model
// at model (a .gguf file for GGUF builds, else a directory), bounded by
// timeout, and returns its metrics: the JSON object it wrote to
// GANTRY_METRICS, else the last JSON object line of its standard output.
// On timeout or cancellation its whole process group is killed.
func runLocalEval(ctx context.Context, dir string, ev *spec.Eval, model, format string, timeout time.Duration) (map[string]float64, error) {
	if len(ev.Command) == 0 {
		return nil, errors.New("no command")
	}
	modelDir, modelFile := model, model
	if fi, err := os.Stat(model); err != nil {
		return nil, fmt.Errorf("the model to evaluate: %w", err)
	} else if !fi.IsDir() {
		modelDir = filepath.Dir(model)
	} else if format == "gguf" {
		if p, err := modelPath(model, format); err == nil {
			modelFile = p
		}
	}
	tmp, err := os.MkdirTemp("", "gantry-eval-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	metricsFile := filepath.Join(tmp, "metrics.json")

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, ev.Command[0], ev.Command[1:]...)
	cmd.Dir = dir
	cmd.Env = evalEnv(ev, modelDir, modelFile, metricsFile, tmp)
	stdout, stderr := &tailBuffer{max: 1 << 20}, &tailBuffer{max: 8 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	killGroup(cmd)
	// A grandchild that keeps the output pipes open must not hold Wait
	// past the kill.
	cmd.WaitDelay = 5 * time.Second
	// The parent-death signal (dieWithParent) fires when the OS thread
	// that started the child exits (Go issue #27505): the thread stays
	// this goroutine's until the evaluator has ended.
	runtime.LockOSThread()
	runErr := cmd.Run()
	runtime.UnlockOSThread()
	reapGroup(cmd)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return nil, fmt.Errorf("%s timed out after %s (killed)%s", ev.Command[0], timeout, stderrTail(stderr))
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: %w", ev.Command[0], ctx.Err())
	case runErr != nil:
		return nil, fmt.Errorf("%s: %w%s", ev.Command[0], runErr, stderrTail(stderr))
	}
	if data, err := os.ReadFile(metricsFile); err == nil && len(bytes.TrimSpace(data)) > 0 {
		m, err := parseMetrics(data)
		if err != nil {
			return nil, fmt.Errorf("%s wrote to %s: %w", ev.Command[0], EnvMetrics, err)
		}
		return m, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	obj, ok := lastJSONObject(stdout.Bytes())
	if !ok {
		return nil, fmt.Errorf("%s printed no JSON object (and wrote none to %s)%s", ev.Command[0], EnvMetrics, stderrTail(stderr))
	}
	m, err := parseMetrics(obj)
	if err != nil {
		return nil, fmt.Errorf("%s printed: %w", ev.Command[0], err)
	}
	return m, nil
}

// evalEnv is a local evaluator's whole environment: PATH and HOME of the
// daemon's, TMPDIR, ev.Env, and the GANTRY_* variables (which ev.Env
// cannot override).
func evalEnv(ev *spec.Eval, modelDir, model, metrics, tmp string) []string {
	env := map[string]string{}
	for _, k := range inheritedEvalEnv {
		if v, ok := os.LookupEnv(k); ok {
			env[k] = v
		}
	}
	env["TMPDIR"] = tmp
	for k, v := range ev.Env {
		env[k] = v
	}
	env[EnvModelDir], env[EnvModel], env[EnvMetrics] = modelDir, model, metrics
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// parseMetrics reads a JSON object of metrics; every value must be a
// number.
func parseMetrics(data []byte) (map[string]float64, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(bytes.TrimSpace(data), &raw); err != nil {
		return nil, fmt.Errorf("not a JSON object of metrics: %w", err)
	}
	if raw == nil {
		return nil, errors.New("not a JSON object of metrics: null")
	}
	out := make(map[string]float64, len(raw))
	names := make([]string, 0, len(raw))
	for k := range raw {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		var f float64
		if err := json.Unmarshal(raw[k], &f); err != nil || string(bytes.TrimSpace(raw[k])) == "null" {
			v := string(raw[k])
			if len(v) > 40 {
				v = v[:40] + "…"
			}
			return nil, fmt.Errorf("metric %q is %s, not a number", k, v)
		}
		out[k] = f
	}
	return out, nil
}

// lastJSONObject is the last line of out that is a JSON object.
func lastJSONObject(out []byte) ([]byte, bool) {
	lines := bytes.Split(out, []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		l := bytes.TrimSpace(lines[i])
		if len(l) >= 2 && l[0] == '{' && l[len(l)-1] == '}' && json.Valid(l) {
			return l, true
		}
	}
	return nil, false
}

// stderrTail is ": " and the last lines of an evaluator's standard error,
// for an error message; "" when it printed nothing.
func stderrTail(b *tailBuffer) string {
	s := strings.TrimSpace(string(b.Bytes()))
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "; stderr: " + strings.Join(lines, "\n")
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

// Bytes is what was kept; a cut first line is dropped.
func (t *tailBuffer) Bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := t.buf
	if t.cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return append([]byte(nil), b...)
}
