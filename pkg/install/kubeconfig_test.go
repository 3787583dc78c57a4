package install

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// fakeJWT builds a synthetic, unsigned service-account-shaped JWT: no
// token issuer runs in these unit tests, and the refresher only reads the
// iat/exp claims (it never verifies; the API server does).
func fakeJWT(t testing.TB, sub string, iat, exp time.Time) string {
	t.Helper()
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]any{"alg": "RS256", "kid": "test"}) + "." +
		enc(map[string]any{"iss": "https://kubernetes.default.svc", "sub": sub, "aud": []string{"https://kubernetes.default.svc"}, "iat": iat.Unix(), "nbf": iat.Unix(), "exp": exp.Unix()}) +
		".c2lnbmF0dXJl"
}

const testCA = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIBADAKBggqhkjOPQQDAjAjMSEwHwYDVQQDDBhrM3Mtc2Vy\n-----END CERTIFICATE-----\n"

func loadKubeconfig(t testing.TB, path string) (server, token string, ca []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatalf("clientcmd.Load: %v", err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("no current context in %s", data)
	}
	return cfg.Clusters[ctx.Cluster].Server, cfg.AuthInfos[ctx.AuthInfo].Token, cfg.Clusters[ctx.Cluster].CertificateAuthorityData
}

func TestWriteKubeconfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "net.d", "authbridge-cni.kubeconfig")
	// An older file with a lax mode is replaced by a 0600 one.
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	tok := fakeJWT(t, "system:serviceaccount:authbridge-system:authbridge-node", time.Now(), time.Now().Add(time.Hour))
	if err := WriteKubeconfig(p, "https://10.96.0.1:443", []byte(testCA), tok+"\n"); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	server, token, ca := loadKubeconfig(t, p)
	if server != "https://10.96.0.1:443" || token != tok || string(ca) != testCA {
		t.Errorf("server %q token %q ca %q", server, token, ca)
	}
	// clientcmd can build a client config from it.
	if _, err := clientcmd.BuildConfigFromFlags("", p); err != nil {
		t.Errorf("BuildConfigFromFlags: %v", err)
	}
	assertNoTempFiles(t, filepath.Dir(p))

	for name, call := range map[string]func() error{
		"no server":  func() error { return WriteKubeconfig(p, "", []byte(testCA), tok) },
		"http":       func() error { return WriteKubeconfig(p, "http://x", []byte(testCA), tok) },
		"no CA":      func() error { return WriteKubeconfig(p, "https://x", nil, tok) },
		"no token":   func() error { return WriteKubeconfig(p, "https://x", []byte(testCA), " \n") },
		"empty path": func() error { return WriteKubeconfig("", "https://x", []byte(testCA), tok) },
	} {
		if err := call(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, token, _ := loadKubeconfig(t, p); token != tok {
		t.Error("a refused write changed the file")
	}
}

func TestJWTTimes(t *testing.T) {
	iat := time.Unix(1_700_000_000, 0)
	exp := iat.Add(time.Hour)
	gi, ge, ok := jwtTimes(fakeJWT(t, "s", iat, exp))
	if !ok || !gi.Equal(iat) || !ge.Equal(exp) {
		t.Fatalf("iat %v exp %v ok %v", gi, ge, ok)
	}
	for _, bad := range []string{"", "a.b", "a.!!!.c", "a." + base64.RawURLEncoding.EncodeToString([]byte(`{"sub":"x"}`)) + ".c"} {
		if _, _, ok := jwtTimes(bad); ok {
			t.Errorf("%q parsed", bad)
		}
	}
}

// TestRefreshSchedule checks when the refresher plans to re-read the token
// (pure computation from the claims; no sleeping).
func TestRefreshSchedule(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	now := time.Unix(1_800_000_000, 0)
	r := &TokenRefresher{TokenFile: tokFile, CAData: []byte(testCA), Server: "https://api:6443",
		KubeconfigPath: filepath.Join(dir, "kc"), RetryInterval: 5 * time.Second, MaxInterval: time.Hour, Logger: quietLog}
	write := func(tok string) {
		if err := os.WriteFile(tokFile, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Fresh 100 s token: re-read at 80 s.
	write(fakeJWT(t, "a", now, now.Add(100*time.Second)))
	wrote, next, err := r.Refresh(now)
	if err != nil || !wrote || !next.Equal(now.Add(80*time.Second)) {
		t.Fatalf("fresh: wrote=%v next=%v err=%v", wrote, next.Sub(now), err)
	}
	// At 80 s the kubelet has not rotated yet: poll every RetryInterval,
	// nothing rewritten.
	wrote, next, err = r.Refresh(now.Add(80 * time.Second))
	if err != nil || wrote || !next.Equal(now.Add(85*time.Second)) {
		t.Fatalf("due: wrote=%v next=%v err=%v", wrote, next.Sub(now), err)
	}
	// Rotated: rewritten, next at 80% of the new one.
	later := now.Add(82 * time.Second)
	write(fakeJWT(t, "b", later, later.Add(3600*time.Second)))
	wrote, next, err = r.Refresh(later)
	if err != nil || !wrote || !next.Equal(later.Add(2880*time.Second)) {
		t.Fatalf("rotated: wrote=%v next=%v err=%v", wrote, next.Sub(later), err)
	}
	// MaxInterval caps the wait.
	r.MaxInterval = time.Minute
	_, next, _ = r.Refresh(later)
	if !next.Equal(later.Add(time.Minute)) {
		t.Errorf("capped next %v", next.Sub(later))
	}
	// The kubeconfig is deleted: rewritten even with the same token.
	if err := os.Remove(r.KubeconfigPath); err != nil {
		t.Fatal(err)
	}
	if wrote, _, err := r.Refresh(later); err != nil || !wrote {
		t.Errorf("missing kubeconfig not rewritten: %v %v", wrote, err)
	}
}

// projectedVolume lays out a token the way the kubelet's AtomicWriter
// does: dir/..<ts>/token, dir/..data -> ..<ts>, dir/token -> ..data/token.
type projectedVolume struct {
	t   testing.TB
	dir string
	n   int
}

func (v *projectedVolume) path() string { return filepath.Join(v.dir, "token") }

func (v *projectedVolume) tsDir() string {
	return filepath.Join(v.dir, fmt.Sprintf("..2026_01_01_00_00_%02d.%d", v.n, v.n))
}

// update swaps in a new token exactly like the kubelet: new timestamped
// dir, ..data_tmp symlink, rename over ..data, old dir removed.
func (v *projectedVolume) update(tok string) {
	t := v.t
	old := v.tsDir()
	v.n++
	ts := v.tsDir()
	if err := os.Mkdir(ts, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts, "token"), []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(v.path()); os.IsNotExist(err) {
		if err := os.Symlink(filepath.Join("..data", "token"), v.path()); err != nil {
			t.Fatal(err)
		}
	}
	if v.n > 1 {
		if err := os.RemoveAll(old); err != nil {
			t.Fatal(err)
		}
	}
}

// overwriteInPlace changes the token without any event in the watched
// volume dir (the write is inside the timestamped subdirectory), so only
// the expiry timer can notice it.
func (v *projectedVolume) overwriteInPlace(tok string) {
	if err := os.WriteFile(filepath.Join(v.tsDir(), "token"), []byte(tok), 0o600); err != nil {
		v.t.Fatal(err)
	}
}

func startRefresher(t *testing.T, r *TokenRefresher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("refresher: %v", err)
		}
	})
}

func waitToken(t *testing.T, kc, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for time.Since(start) < within {
		if data, err := os.ReadFile(kc); err == nil {
			if cfg, err := clientcmd.Load(data); err == nil {
				if ai := cfg.AuthInfos[pluginconf.PluginType]; ai != nil && ai.Token == want {
					return time.Since(start)
				}
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("kubeconfig %s does not carry the expected token after %v", kc, within)
	return 0
}

func TestTokenRefresherFollowsKubeletRotation(t *testing.T) {
	vol := &projectedVolume{t: t, dir: t.TempDir()}
	now := time.Now()
	tok1 := fakeJWT(t, "one", now, now.Add(time.Hour))
	vol.update(tok1)
	caFile := filepath.Join(vol.dir, "ca.crt")
	if err := os.WriteFile(caFile, []byte(testCA), 0o644); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(t.TempDir(), "authbridge-cni.kubeconfig")
	var refreshes atomic.Int32
	startRefresher(t, &TokenRefresher{TokenFile: vol.path(), CAFile: caFile, Server: "https://10.96.0.1:443",
		KubeconfigPath: kc, Logger: quietLog, OnRefresh: func() { refreshes.Add(1) }})
	waitToken(t, kc, tok1, 10*time.Second)
	if fi, _ := os.Stat(kc); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", fi.Mode().Perm())
	}
	if refreshes.Load() != 0 {
		t.Errorf("initial write counted as a refresh")
	}
	for i := range 3 {
		tok := fakeJWT(t, fmt.Sprintf("rotated-%d", i), time.Now(), time.Now().Add(time.Hour))
		vol.update(tok)
		d := waitToken(t, kc, tok, 10*time.Second)
		t.Logf("rotation %d reached the kubeconfig after %v", i, d)
	}
	waitCount(t, &refreshes, 3)
}

func TestTokenRefresherRereadsBeforeExpiry(t *testing.T) {
	vol := &projectedVolume{t: t, dir: t.TempDir()}
	now := time.Now()
	// A 2-second token: the refresher plans a re-read at 1.6 s.
	tok1 := fakeJWT(t, "short", now, now.Add(2*time.Second))
	vol.update(tok1)
	kc := filepath.Join(t.TempDir(), "kc")
	var refreshes atomic.Int32
	startRefresher(t, &TokenRefresher{TokenFile: vol.path(), CAData: []byte(testCA), Server: "https://api:6443",
		KubeconfigPath: kc, RetryInterval: 100 * time.Millisecond, Logger: quietLog, OnRefresh: func() { refreshes.Add(1) }})
	waitToken(t, kc, tok1, 10*time.Second)
	tok2 := fakeJWT(t, "next", now, now.Add(time.Hour))
	vol.overwriteInPlace(tok2) // no event in the watched dir
	waitToken(t, kc, tok2, 10*time.Second)
	t.Logf("token changed without a watch event; picked up by the expiry timer after %v (re-read planned at 80%% of 2s)", time.Since(now))
	// OnRefresh runs right after the rename that waitToken saw.
	waitCount(t, &refreshes, 1)
}

// waitCount waits until c reaches want, then checks it stays there briefly.
func waitCount(t *testing.T, c *atomic.Int32, want int32) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for c.Load() < want && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if got := c.Load(); got != want {
		t.Errorf("OnRefresh called %d times, want %d", got, want)
	}
}
