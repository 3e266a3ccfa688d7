package kube

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/gantry-dev/gantry/spec"
)

// The client-side rate limit RESTConfig sets, the same as New's default:
// client-go's 5 requests per second would make a reconcile crawl.
const (
	restQPS   = 50
	restBurst = 100
)

// RESTConfig builds the client configuration of one cluster, the way a
// cluster block (or the command line) says to reach it:
//
//   - inCluster: the service account of the pod the process runs in
//     (rest.InClusterConfig); kubeconfig and context are ignored;
//   - kubeconfig set: that file, and its context named context ("" = the
//     file's current context);
//   - neither: client-go's default loading rules (KUBECONFIG, else
//     ~/.kube/config) and context, which fall back to the pod's service
//     account when there is no kubeconfig at all.
//
// The config's QPS and Burst are 50 and 100 (as New's), its UserAgent
// "gantry", unless the kubeconfig sets them. The server must be an http(s)
// URL.
//
// Errors name the file and the context but never carry what the file
// holds: tokens, passwords, key and certificate data, and the user
// information of URLs are masked in anything client-go reports. A
// rest.Config holds credentials; never log or print one.
func RESTConfig(kubeconfig, context string, inCluster bool) (*rest.Config, error) {
	var cfg *rest.Config
	if inCluster {
		c, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (the pod's service account): %w", err)
		}
		cfg = c
	} else {
		rules := clientcmd.NewDefaultClientConfigLoadingRules()
		rules.ExplicitPath = kubeconfig
		cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: context})
		c, err := cc.ClientConfig()
		if err != nil {
			msg := err.Error()
			if raw, rawErr := cc.RawConfig(); rawErr == nil && clientcmd.IsEmptyConfig(err) {
				msg = explainEmpty(&raw, context, msg)
			}
			return nil, kubeconfigError(rules, cc, context, msg)
		}
		if err := checkServer(c.Host); err != nil {
			return nil, kubeconfigError(rules, cc, context, err.Error())
		}
		cfg = c
	}
	if cfg.QPS == 0 {
		cfg.QPS = restQPS
	}
	if cfg.Burst == 0 {
		cfg.Burst = restBurst
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "gantry"
	}
	return cfg, nil
}

// checkServer refuses a server that client-go would only refuse at the
// first request, with a message that quotes it masked.
func checkServer(host string) error {
	if u, err := url.Parse(host); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return fmt.Errorf("server %q is not an http(s) URL with a host", spec.MaskURLCredentials(host))
	}
	return nil
}

// kubeconfigError is msg, which client-go wrote about the kubeconfig
// files of rules, prefixed with the files and the context and with every
// credential those files hold masked. It wraps nothing: the original
// error's text is the one thing that must not get out.
func kubeconfigError(rules *clientcmd.ClientConfigLoadingRules, cc clientcmd.ClientConfig, context, msg string) error {
	files := rules.GetLoadingPrecedence()
	if rules.ExplicitPath != "" {
		files = []string{rules.ExplicitPath}
	}
	var secrets []string
	if raw, err := cc.RawConfig(); err == nil {
		secrets = configSecrets(&raw)
	}
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil {
			secrets = append(secrets, fileSecrets(b)...)
		}
	}
	where := "kubeconfig " + strings.Join(files, string(os.PathListSeparator))
	if len(files) == 0 {
		where = "kubeconfig (none found: KUBECONFIG is empty and ~/.kube/config is missing)"
	}
	if context != "" {
		where += fmt.Sprintf(" (context %q)", context)
	}
	return fmt.Errorf("%s: %s", where, redact(msg, secrets))
}

// explainEmpty replaces client-go's advice for a kubeconfig it found
// nothing usable in (set KUBERNETES_MASTER) with what is missing.
func explainEmpty(raw *clientcmdapi.Config, context, msg string) string {
	name := context
	if name == "" {
		name = raw.CurrentContext
	}
	switch ctx := raw.Contexts[name]; {
	case name == "" && len(raw.Contexts) > 0:
		return "the file has no current-context; name one of its contexts"
	case ctx == nil:
		return msg
	case raw.Clusters[ctx.Cluster] == nil:
		return fmt.Sprintf("context %q names cluster %q, which the file does not define", name, ctx.Cluster)
	}
	return msg
}

// configSecrets lists the credential values of a parsed kubeconfig, as
// they are and as the base64 a file holds them in.
func configSecrets(c *clientcmdapi.Config) []string {
	var out []string
	data := func(b []byte) {
		if len(b) > 0 {
			out = append(out, string(b), base64.StdEncoding.EncodeToString(b))
		}
	}
	for _, a := range c.AuthInfos {
		out = append(out, a.Token, a.Password)
		data(a.ClientKeyData)
		data(a.ClientCertificateData)
		if a.AuthProvider != nil {
			for _, v := range a.AuthProvider.Config {
				out = append(out, v)
			}
		}
		if a.Exec != nil {
			for _, e := range a.Exec.Env {
				out = append(out, e.Value)
			}
		}
	}
	for _, cl := range c.Clusters {
		data(cl.CertificateAuthorityData)
	}
	return out
}

// secretLine finds the value of a credential key on a line of a
// kubeconfig, also one too broken to parse.
var secretLine = regexp.MustCompile(`(?m)^\s*-?\s*"?(token|password|client-key-data|client-certificate-data|certificate-authority-data|id-token|refresh-token|access-token|client-secret)"?\s*:\s*(.+?)\s*$`)

// fileSecrets lists the values of credential keys in a kubeconfig's text,
// quoted or not.
func fileSecrets(b []byte) []string {
	var out []string
	for _, m := range secretLine.FindAllSubmatch(b, -1) {
		v := string(m[2])
		out = append(out, v, strings.Trim(v, `"'`))
	}
	return out
}

// minSecret is the shortest value redact masks: shorter ones would mask
// ordinary words of the message, and no real credential is that short.
const minSecret = 4

// redact masks the secrets in msg, longest first (a value that contains
// another goes whole), and the user information of URLs.
func redact(msg string, secrets []string) string {
	secrets = slices.DeleteFunc(secrets, func(s string) bool { return len(s) < minSecret })
	slices.SortFunc(secrets, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	for _, s := range slices.Compact(secrets) {
		msg = strings.ReplaceAll(msg, s, spec.MaskedUserinfo)
	}
	return spec.MaskURLCredentials(msg)
}
