package install

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
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
