package kube

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// Credentials planted in the kubeconfigs below: no error may contain any
// of them, in any encoding.
const (
	plantedToken    = "plantedTOKEN-7f3a9c1e5b2d"
	plantedPassword = "plantedPASSWORD-q8w7e6"
	plantedKey      = "-----BEGIN PLANTED KEY----- 0123456789"
	plantedCert     = "-----BEGIN PLANTED CERT----- 9876543210"
	plantedURLPass  = "plantedURLPW-55aa"
)

var plantedSecrets = []string{
	plantedToken, plantedPassword, plantedKey, plantedCert, plantedURLPass,
	b64(plantedKey), b64(plantedCert),
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// kubeconfigText is a kubeconfig with two contexts, "east" (current) and
// "west", whose users hold every kind of planted credential; server
// replaces west's server URL.
func kubeconfigText(westServer string) string {
	return `apiVersion: v1
kind: Config
current-context: east
clusters:
- name: east
  cluster:
    server: https://127.0.0.1:6443
    insecure-skip-tls-verify: true
- name: west
  cluster:
    server: ` + westServer + `
    insecure-skip-tls-verify: true
users:
- name: east-admin
  user:
    token: ` + plantedToken + `
- name: west-admin
  user:
    username: admin
    password: ` + plantedPassword + `
- name: cert-user
  user:
    client-certificate-data: ` + b64(plantedCert) + `
    client-key-data: ` + b64(plantedKey) + `
contexts:
- name: east
  context: {cluster: east, user: east-admin}
- name: west
  context: {cluster: west, user: west-admin}
- name: certs
  context: {cluster: east, user: cert-user}
- name: ghost-cluster
  context: {cluster: nowhere, user: east-admin}
`
}

func writeKubeconfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checkNoSecrets fails when err's text holds a planted credential.
func checkNoSecrets(t *testing.T, err error) {
	t.Helper()
	for _, s := range plantedSecrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error leaks a credential %q: %s", s, err)
		}
	}
}

func TestRESTConfigContexts(t *testing.T) {
	path := writeKubeconfig(t, kubeconfigText("https://west.example:8443"))
	cfg, err := RESTConfig(path, "", false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || cfg.BearerToken != plantedToken {
		t.Errorf("current context: host %q, token set %v; want east's", cfg.Host, cfg.BearerToken == plantedToken)
	}
	if cfg.QPS != restQPS || cfg.Burst != restBurst || cfg.UserAgent != "gantry" {
		t.Errorf("QPS %g, Burst %d, UserAgent %q; want %d, %d, gantry", cfg.QPS, cfg.Burst, cfg.UserAgent, restQPS, restBurst)
	}
	cfg, err = RESTConfig(path, "west", false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://west.example:8443" || cfg.Password != plantedPassword || cfg.BearerToken != "" {
		t.Errorf("context west: host %q; want west's server and password", cfg.Host)
	}
	// The rest.Config itself never prints a credential either.
	for _, c := range []*rest.Config{cfg} {
		checkNoSecrets(t, errors.New(c.String()))
	}

	// No path: KUBECONFIG, as kubectl reads it.
	t.Setenv("KUBECONFIG", path)
	cfg, err = RESTConfig("", "west", false)
	if err != nil || cfg.Host != "https://west.example:8443" {
		t.Fatalf("KUBECONFIG, context west: %v, host %q", err, hostOf(cfg))
	}
}

func hostOf(c *rest.Config) string {
	if c == nil {
		return ""
	}
	return c.Host
}

// TestRESTConfigErrors breaks the kubeconfig in many ways: every error
// names the file (and the context asked for) and holds no credential.
func TestRESTConfigErrors(t *testing.T) {
	good := kubeconfigText("https://west.example:8443")
	dir := t.TempDir()
	notDir := filepath.Join(dir, "a-file")
	if err := os.WriteFile(notDir, []byte(good), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, text, context string
		path                string // instead of a file with text
		want                []string
	}{
		{name: "unknown context", text: good, context: "south", want: []string{`context "south"`, "south"}},
		{name: "missing file", path: filepath.Join(dir, "no-such-kubeconfig"), context: "east", want: []string{"no-such-kubeconfig"}},
		{name: "a directory", path: dir, want: []string{dir}},
		{name: "below a file", path: filepath.Join(notDir, "kubeconfig"), want: []string{"not a directory"}},
		{name: "bad server port", text: kubeconfigText("https://admin:" + plantedURLPass + "@west.example:notaport"), context: "west", want: []string{"west.example", "***"}},
		{name: "server not a URL", text: kubeconfigText("https://admin:" + plantedURLPass + "@west example"), context: "west", want: []string{"server", "***"}},
		{name: "server without scheme", text: kubeconfigText("ftp://west.example"), context: "west", want: []string{"ftp://west.example"}},
		{name: "no server", text: strings.Replace(good, "server: https://127.0.0.1:6443", "", 1), context: "east", want: []string{"server"}},
		{name: "unknown cluster", text: good, context: "ghost-cluster", want: []string{"nowhere"}},
		{name: "broken YAML after the token", text: strings.Replace(good, "    token: "+plantedToken, "    token: "+plantedToken+"\n   : - [oops", 1), context: "east", want: []string{"yaml"}},
		{name: "token of the wrong type", text: strings.Replace(good, "    token: "+plantedToken, "    token: {value: "+plantedToken+"}", 1), context: "east"},
		{name: "key data not base64", text: strings.Replace(good, b64(plantedKey), plantedKey+"!!", 1), context: "certs"},
		{name: "password in a quoted string", text: strings.Replace(good, "password: "+plantedPassword, `"password": "`+plantedPassword+`" [`, 1), context: "west"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := tc.path
			if path == "" {
				path = writeKubeconfig(t, tc.text)
			}
			cfg, err := RESTConfig(path, tc.context, false)
			if err == nil {
				t.Fatalf("no error (host %q)", cfg.Host)
			}
			t.Logf("%v", err)
			checkNoSecrets(t, err)
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file %s: %v", path, err)
			}
			if tc.context != "" && !strings.Contains(err.Error(), `context "`+tc.context+`"`) {
				t.Errorf("error does not name the context %q: %v", tc.context, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
		})
	}
}

func TestRESTConfigUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads a file of mode 0000")
	}
	path := writeKubeconfig(t, kubeconfigText("https://west.example:8443"))
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err := RESTConfig(path, "east", false)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("unreadable kubeconfig: %v", err)
	}
	checkNoSecrets(t, err)
}

func TestRESTConfigInClusterOutsideAPod(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	t.Setenv("KUBERNETES_SERVICE_PORT", "")
	_, err := RESTConfig(writeKubeconfig(t, kubeconfigText("https://x:1")), "east", true)
	if !errors.Is(err, rest.ErrNotInCluster) || !strings.Contains(err.Error(), "service account") {
		t.Fatalf("in_cluster outside a pod: %v, want rest.ErrNotInCluster saying service account", err)
	}
}

func TestRedact(t *testing.T) {
	got := redact("a sekrit-value and sekrit-value-longer at https://u:p@h/x", []string{"sekrit-value", "sekrit-value-longer", "ab", ""})
	if want := "a *** and *** at https://***@h/x"; got != want {
		t.Errorf("redact = %q, want %q", got, want)
	}
}

func TestRESTConfigNoCurrentContext(t *testing.T) {
	path := writeKubeconfig(t, strings.Replace(kubeconfigText("https://x:1"), "current-context: east\n", "", 1))
	_, err := RESTConfig(path, "", false)
	if err == nil || !strings.Contains(err.Error(), "no current-context") || !strings.Contains(err.Error(), path) {
		t.Fatalf("kubeconfig without a current context: %v", err)
	}
	checkNoSecrets(t, err)
}
