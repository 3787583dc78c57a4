package install

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kagenti/authbridge-node/pkg/atomicfile"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// DefaultTokenFile is where the kubelet projects the agent's
// service-account token.
const DefaultTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// DefaultCAFile is the cluster CA projected next to the token.
const DefaultCAFile = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"

// kubeconfigName is the cluster, user and context name in the kubeconfig.
const kubeconfigName = pluginconf.PluginType

// WriteKubeconfig writes the plugin's kubeconfig (server, CA, bearer
// token) atomically with mode 0600: it holds a credential.
func WriteKubeconfig(path, server string, caData []byte, token string) error {
	switch {
	case path == "":
		return errors.New("kubeconfig path is empty")
	case server == "":
		return errors.New("kubeconfig server is empty: set the API server URL (https://host:port)")
	case !strings.HasPrefix(server, "https://"):
		return fmt.Errorf("kubeconfig server %q: want an https:// URL", server)
	case len(caData) == 0:
		return errors.New("kubeconfig CA data is empty: pass the cluster CA (the service account's ca.crt)")
	case strings.TrimSpace(token) == "":
		return errors.New("kubeconfig token is empty")
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[kubeconfigName] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caData}
	cfg.AuthInfos[kubeconfigName] = &clientcmdapi.AuthInfo{Token: strings.TrimSpace(token)}
	cfg.Contexts[kubeconfigName] = &clientcmdapi.Context{Cluster: kubeconfigName, AuthInfo: kubeconfigName}
	cfg.CurrentContext = kubeconfigName
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("render kubeconfig: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create kubeconfig dir: %w", err)
	}
	return atomicfile.Write(path, data, 0o600)
}

// jwtTimes returns the iat and exp claims of a JWT without verifying it
// (we only schedule a re-read; the API server verifies). ok is false when
// the token is not a JWT or has no exp.
func jwtTimes(token string) (iat, exp time.Time, ok bool) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return time.Time{}, time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}, time.Time{}, false
	}
	var claims struct {
		Iat *json.Number `json:"iat"`
		Exp *json.Number `json:"exp"`
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims.Exp == nil {
		return time.Time{}, time.Time{}, false
	}
	toTime := func(n *json.Number) (time.Time, bool) {
		f, err := n.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return time.Time{}, false
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)), true
	}
	exp, ok = toTime(claims.Exp)
	if !ok {
		return time.Time{}, time.Time{}, false
	}
	if claims.Iat != nil {
		iat, _ = toTime(claims.Iat)
	}
	return iat, exp, true
}

// TokenRefresher keeps the plugin's kubeconfig in step with the agent's
// projected service-account token. The kubelet rotates that token (at 80%
// of its lifetime) by swapping the volume's ..data symlink; the refresher
// watches the token's directory and rewrites the kubeconfig when the token
// (or CA) changes, and independently re-reads the file at RefreshFraction of
// the token's lifetime (from the unverified iat/exp claims) and then every
// RetryInterval until a new token shows up, so a missed event cannot let the
// plugin's token expire.
type TokenRefresher struct {
	// TokenFile defaults to DefaultTokenFile.
	TokenFile string
	// CAFile is re-read on each refresh when set; otherwise CAData is used.
	CAFile string
	CAData []byte
	// Server is the API server URL the plugin uses.
	Server string
	// KubeconfigPath is the plugin's kubeconfig (mode 0600).
	KubeconfigPath string
	// RefreshFraction of the token lifetime at which to re-read; default 0.8.
	RefreshFraction float64
	// RetryInterval between re-reads once a token is due; default 5s.
	RetryInterval time.Duration
	// MaxInterval caps the wait between re-reads (also for tokens without
	// exp); default 1m.
	MaxInterval time.Duration
	// Debounce after a file event; default DefaultDebounce.
	Debounce time.Duration
	// OnRefresh is called after each rewrite that follows the first write
	// (authbridge_token_refreshes_total).
	OnRefresh func()
	Logger    *slog.Logger

	token   string
	seen    time.Time // when token was first read
	ca      []byte
	written bool
}

func (r *TokenRefresher) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.Default()
}

func (r *TokenRefresher) tokenFile() string {
	if r.TokenFile != "" {
		return r.TokenFile
	}
	return DefaultTokenFile
}

// Refresh re-reads the token (and CA file) and rewrites the kubeconfig if
// either changed or the kubeconfig is missing. It returns whether it wrote
// and when the token should next be re-read. Not safe for concurrent use;
// Run calls it from one goroutine.
func (r *TokenRefresher) Refresh(now time.Time) (wrote bool, next time.Time, err error) {
	maxWait := r.MaxInterval
	if maxWait <= 0 {
		maxWait = time.Minute
	}
	retry := r.RetryInterval
	if retry <= 0 {
		retry = 5 * time.Second
	}
	next = now.Add(retry)
	raw, err := os.ReadFile(r.tokenFile())
	if err != nil {
		return false, next, fmt.Errorf("read service-account token: %w", err)
	}
	token := strings.TrimSpace(string(raw))
	if token == "" {
		return false, next, fmt.Errorf("service-account token file %s is empty", r.tokenFile())
	}
	ca := r.CAData
	if r.CAFile != "" {
		if ca, err = os.ReadFile(r.CAFile); err != nil {
			return false, next, fmt.Errorf("read cluster CA: %w", err)
		}
	}
	_, statErr := os.Stat(r.KubeconfigPath)
	reason := ""
	switch {
	case !r.written:
		reason = "initial"
	case token != r.token:
		reason = "token rotated"
	case !bytes.Equal(ca, r.ca):
		reason = "CA changed"
	case errors.Is(statErr, fs.ErrNotExist):
		reason = "kubeconfig missing"
	}
	if reason != "" {
		if err := WriteKubeconfig(r.KubeconfigPath, r.Server, ca, token); err != nil {
			return false, next, err
		}
		if r.written {
			r.logger().Info("rewrote plugin kubeconfig", "kubeconfig", r.KubeconfigPath, "reason", reason)
			if r.OnRefresh != nil {
				r.OnRefresh()
			}
		}
		if token != r.token {
			r.seen = now
		}
		r.written, r.token, r.ca, wrote = true, token, ca, true
	}
	next = r.nextCheck(now, retry, maxWait)
	return wrote, next, nil
}

// nextCheck schedules the next re-read: at RefreshFraction of the token's
// lifetime (iat..exp; without iat, from when we first read it), then every
// retry until the kubelet has rotated the token; at most maxWait ahead.
func (r *TokenRefresher) nextCheck(now time.Time, retry, maxWait time.Duration) time.Time {
	iat, exp, ok := jwtTimes(r.token)
	if !ok {
		return now.Add(maxWait)
	}
	if iat.IsZero() || !iat.Before(exp) {
		iat = r.seen
	}
	frac := r.RefreshFraction
	if frac <= 0 || frac >= 1 {
		frac = 0.8
	}
	at := iat.Add(time.Duration(float64(exp.Sub(iat)) * frac))
	if !at.After(now) {
		if !now.Before(exp) {
			r.logger().Warn("service-account token has expired and the kubelet has not rotated it yet", "file", r.tokenFile(), "exp", exp)
		}
		return now.Add(min(retry, maxWait))
	}
	if limit := now.Add(maxWait); at.After(limit) {
		return limit
	}
	return at
}

// Run writes the kubeconfig and keeps it fresh until ctx is done (then it
// returns nil). It fails at start if the token cannot be read or the
// kubeconfig cannot be written; later failures are logged and retried.
func (r *TokenRefresher) Run(ctx context.Context) error {
	dir := filepath.Dir(r.tokenFile())
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch token dir: %w", err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watch token dir %s: %w", dir, err)
	}
	_, next, err := r.Refresh(time.Now())
	if err != nil {
		return err
	}
	debounce := r.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	check := time.NewTimer(time.Until(next))
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("token dir watcher closed")
			}
			if ev.Op != fsnotify.Chmod {
				check.Reset(debounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("token dir watcher closed")
			}
			r.logger().Warn("token dir watch error", "err", err)
			check.Reset(debounce)
		case <-check.C:
			_, next, err := r.Refresh(time.Now())
			if err != nil {
				r.logger().Warn("refresh plugin kubeconfig", "err", err)
			}
			check.Reset(time.Until(next))
		}
	}
}
