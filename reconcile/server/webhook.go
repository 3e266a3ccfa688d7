package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// maxWebhookBody bounds what a webhook may send; push payloads are small.
const maxWebhookBody = 1 << 20

// webhook checks a GitHub (X-Hub-Signature-256) or GitLab (X-Gitlab-Token)
// push event and calls trigger. With no secret configured every request is
// refused: an open endpoint would let anyone force fetches.
func (s *Server) webhook(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	provider := "unknown"
	switch {
	case r.Header.Get("X-GitHub-Event") != "":
		provider = "github"
	case r.Header.Get("X-Gitlab-Event") != "":
		provider = "gitlab"
	}
	count := func(result string) {
		if s.Metrics != nil {
			s.Metrics.webhooks.WithLabelValues(provider, result).Inc()
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxWebhookBody+1))
	if err != nil || len(body) > maxWebhookBody {
		count("bad_request")
		http.Error(w, "body too large or unreadable", http.StatusBadRequest)
		return
	}
	if len(s.WebhookSecret) == 0 || !s.authentic(provider, r, body) {
		count("unauthorized")
		slog.Warn("webhook refused: bad or missing signature", "provider", provider, "remote", r.RemoteAddr)
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	event := r.Header.Get("X-GitHub-Event") + r.Header.Get("X-Gitlab-Event")
	if event != "push" && event != "Push Hook" && event != "Tag Push Hook" {
		count("ignored")
		w.WriteHeader(http.StatusNoContent)
		return
	}
	count("accepted")
	slog.Info("webhook: fetching now", "provider", provider, "event", event)
	if s.Trigger != nil {
		s.Trigger()
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) authentic(provider string, r *http.Request, body []byte) bool {
	switch provider {
	case "github":
		sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
		if !ok {
			return false
		}
		got, err := hex.DecodeString(sig)
		if err != nil {
			return false
		}
		mac := hmac.New(sha256.New, s.WebhookSecret)
		mac.Write(body)
		return hmac.Equal(got, mac.Sum(nil))
	case "gitlab":
		return subtle.ConstantTimeCompare([]byte(r.Header.Get("X-Gitlab-Token")), s.WebhookSecret) == 1
	}
	return false
}
