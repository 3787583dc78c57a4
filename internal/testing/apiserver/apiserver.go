// Package apiserver runs a real kube-apiserver (built by hack/build-kube.sh)
// on a real etcd (Debian's etcd-server) for integration tests: RBAC
// authorization, static admin token, ServiceAccount tokens via the
// TokenRequest API. No controllers run: nothing schedules, nothing garbage
// collects; objects are exactly what the test creates.
//
// In a test:
//
//	srv := apiserver.Start(t) // stopped at t.Cleanup
//	cs := srv.AdminClient(t)
//
// One server per package (startup takes ~10-15 s), started by the first
// test that needs it, so pure tests of the package run without one:
//
//	func TestMain(m *testing.M) { os.Exit(apiserver.RunTests(m)) }
//
//	func TestX(t *testing.T) {
//		srv := apiserver.Shared(t) // skips under -short
//		...
//	}
//
// Environment: AUTHBRIDGE_KUBE_APISERVER names a kube-apiserver binary to use
// instead of building one; AUTHBRIDGE_ETCD names the etcd binary (default:
// etcd on PATH).
package apiserver

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// KubeVersion is the kube-apiserver version hack/build-kube.sh builds.
const KubeVersion = "v1.34.4"

// ServiceCIDR is the --service-cluster-ip-range the server runs with.
const ServiceCIDR = "10.96.0.0/16"

// Options tune New. The zero value is fine.
type Options struct {
	// Dir holds etcd data, certs, keys and logs; a temp dir when empty
	// (then removed by Stop).
	Dir string
	// StartTimeout bounds waiting for /readyz (default 120 s: the first
	// start after a build is slower).
	StartTimeout time.Duration
	// ExtraArgs are appended to kube-apiserver's flags.
	ExtraArgs []string
}

// Server is a running etcd + kube-apiserver pair.
type Server struct {
	// URL is the https address of the API server (https://127.0.0.1:port).
	URL string
	// CA is the PEM CA bundle that signed the serving certificate.
	CA []byte
	// Dir holds the server's files (certs, keys, logs, etcd data).
	Dir string

	adminToken string
	etcd, api  *exec.Cmd
	ownDir     bool
	stopOnce   sync.Once
}

// shared is the package-wide server of this test binary: started by the
// first test that asks (Shared), stopped by RunTests after m.Run. A test
// binary holds one package, so this global is that package's server; tests
// that never ask never pay for it (or need a built kube-apiserver).
var shared struct {
	once sync.Once
	mu   sync.Mutex
	srv  *Server
	err  error
}

// Shared returns the package's one server, starting it on first use (start
// up takes ~10 s). Under -short it skips t: the server needs a kube-apiserver
// built by hack/build-kube.sh, minutes on a first run. A failed start fails
// every test that asks, with the same error (no retry per test).
func Shared(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real kube-apiserver: not run under -short; make test runs it")
	}
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		s, err := New(ctx, Options{})
		shared.mu.Lock()
		shared.srv, shared.err = s, err
		shared.mu.Unlock()
	})
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.err != nil {
		t.Fatalf("start the package's kube-apiserver: %v", shared.err)
	}
	return shared.srv
}

// RunTests is a package's TestMain body when its tests use Shared: it runs
// them and stops the shared server if one was started. It returns the exit
// code for os.Exit.
func RunTests(m *testing.M) int {
	code := m.Run()
	StopShared()
	return code
}

// StopShared stops the server Shared started, if any; for a TestMain that
// does more than RunTests.
func StopShared() {
	shared.mu.Lock()
	s := shared.srv
	shared.mu.Unlock()
	if s != nil {
		s.Stop()
	}
}

// Start runs a server for one test and stops it at t.Cleanup. It fails the
// test when the binaries cannot be found or built; it skips only under
// -short, as Shared does.
func Start(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		t.Skip("needs a real kube-apiserver: not run under -short; make test runs it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	s, err := New(ctx, Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatalf("start kube-apiserver harness: %v", err)
	}
	t.Cleanup(s.Stop)
	return s
}

// New starts etcd and kube-apiserver and waits until /readyz answers 200.
// Call Stop when done.
func New(ctx context.Context, o Options) (_ *Server, err error) {
	if o.StartTimeout == 0 {
		o.StartTimeout = 120 * time.Second
	}
	s := &Server{Dir: o.Dir}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "authbridge-apiserver-")
		if err != nil {
			return nil, err
		}
		s.Dir, s.ownDir = d, true
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()

	etcdBin, err := findEtcd()
	if err != nil {
		return nil, err
	}
	apiBin, err := findAPIServer()
	if err != nil {
		return nil, err
	}
	if err := s.writeFiles(); err != nil {
		return nil, err
	}
	// A port freed by the kernel can be taken by someone else before the
	// child binds it; retry the whole start a few times in that case.
	for attempt := 0; ; attempt++ {
		err = s.launch(ctx, etcdBin, apiBin, o)
		if err == nil {
			return s, nil
		}
		s.kill()
		if attempt == 2 || ctx.Err() != nil || !errors.Is(err, errPortRace) {
			return nil, err
		}
	}
}

var errPortRace = errors.New("port in use")

func (s *Server) launch(ctx context.Context, etcdBin, apiBin string, o Options) error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	clientURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcdData := filepath.Join(s.Dir, "etcd")
	_ = os.RemoveAll(etcdData)
	etcdLog := filepath.Join(s.Dir, "etcd.log")
	s.etcd, err = startProcess(etcdBin, etcdLog,
		"--name=harness",
		"--data-dir="+etcdData,
		"--listen-client-urls="+clientURL,
		"--advertise-client-urls="+clientURL,
		"--listen-peer-urls="+peerURL,
		"--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=harness="+peerURL,
		"--listen-metrics-urls=",
		"--log-level=warn",
		"--quota-backend-bytes=1073741824",
		"--unsafe-no-fsync",
	)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, clientURL+"/health", nil, 30*time.Second, s.etcd); err != nil {
		return s.startErr("etcd", etcdLog, err)
	}

	port := ports[2]
	s.URL = "https://127.0.0.1:" + strconv.Itoa(port)
	apiLog := filepath.Join(s.Dir, "kube-apiserver.log")
	args := []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(port),
		"--cert-dir=" + filepath.Join(s.Dir, "certs"),
		"--tls-cert-file=" + filepath.Join(s.Dir, "serving.crt"),
		"--tls-private-key-file=" + filepath.Join(s.Dir, "serving.key"),
		"--token-auth-file=" + filepath.Join(s.Dir, "tokens.csv"),
		"--authorization-mode=RBAC",
		"--service-account-key-file=" + filepath.Join(s.Dir, "sa.pub"),
		"--service-account-signing-key-file=" + filepath.Join(s.Dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--api-audiences=https://kubernetes.default.svc.cluster.local",
		"--service-cluster-ip-range=" + ServiceCIDR,
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}
	args = append(args, o.ExtraArgs...)
	s.api, err = startProcess(apiBin, apiLog, args...)
	if err != nil {
		return err
	}
	if err := waitHTTP(ctx, s.URL+"/readyz", s.httpClient(), o.StartTimeout, s.api); err != nil {
		if logHas(apiLog, "address already in use") || logHas(etcdLog, "address already in use") {
			return errPortRace
		}
		return s.startErr("kube-apiserver", apiLog, err)
	}
	return nil
}

// Stop terminates kube-apiserver and etcd and removes a temp Dir.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		s.kill()
		if s.ownDir {
			_ = os.RemoveAll(s.Dir)
		}
	})
}

func (s *Server) kill() {
	for _, c := range []*exec.Cmd{s.api, s.etcd} {
		if c == nil || c.Process == nil {
			continue
		}
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	s.api, s.etcd = nil, nil
}

// AdminConfig is a client config for a system:masters user.
func (s *Server) AdminConfig() *rest.Config {
	return s.TokenConfig(s.adminToken)
}

// AdminClient is a clientset for AdminConfig; it fails the test on error.
func (s *Server) AdminClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.AdminConfig())
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	return cs
}

// TokenConfig is a client config authenticating with a bearer token.
func (s *Server) TokenConfig(token string) *rest.Config {
	return &rest.Config{
		Host:            s.URL,
		BearerToken:     token,
		TLSClientConfig: rest.TLSClientConfig{CAData: append([]byte(nil), s.CA...)},
		QPS:             200,
		Burst:           400,
	}
}

// ConfigFor is a client config acting as user (with groups) through
// impersonation by the admin: RBAC is evaluated for that user exactly as if
// it had authenticated itself.
func (s *Server) ConfigFor(user string, groups ...string) *rest.Config {
	c := s.AdminConfig()
	c.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: append([]string{"system:authenticated"}, groups...)}
	return c
}

// ServiceAccountToken creates namespace and ServiceAccount when missing and
// returns a token for it from the TokenRequest API (the path a projected
// service-account token takes in a real pod).
func (s *Server) ServiceAccountToken(ctx context.Context, namespace, name string, ttl time.Duration) (string, error) {
	cs, err := kubernetes.NewForConfig(s.AdminConfig())
	if err != nil {
		return "", err
	}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create namespace %s: %w", namespace, err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create serviceaccount %s/%s: %w", namespace, name, err)
	}
	secs := int64(ttl / time.Second)
	if secs < 600 {
		secs = 600 // the API's minimum
	}
	tr, err := cs.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &secs},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token request for %s/%s: %w", namespace, name, err)
	}
	return tr.Status.Token, nil
}

// ServiceAccountConfig is TokenConfig for a fresh ServiceAccount token.
func (s *Server) ServiceAccountConfig(ctx context.Context, namespace, name string) (*rest.Config, error) {
	tok, err := s.ServiceAccountToken(ctx, namespace, name, time.Hour)
	if err != nil {
		return nil, err
	}
	return s.TokenConfig(tok), nil
}

// Kubeconfig renders a kubeconfig file for a bearer token (for binaries
// started by tests).
func (s *Server) Kubeconfig(token string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, `apiVersion: v1
kind: Config
clusters:
- name: harness
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: user
  user:
    token: %s
contexts:
- name: harness
  context: {cluster: harness, user: user}
current-context: harness
`, s.URL, b64(s.CA), token)
	return b.Bytes()
}

// AdminKubeconfig is Kubeconfig for the admin token.
func (s *Server) AdminKubeconfig() []byte { return s.Kubeconfig(s.adminToken) }

func (s *Server) httpClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CA)
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &tokenTransport{token: s.adminToken, base: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		}},
	}
}

type tokenTransport struct {
	token string
	base  http.RoundTripper
}

func (t *tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+t.token)
	return t.base.RoundTrip(r)
}

// writeFiles creates the CA, serving cert, service-account key pair and the
// static token file, all with Go's crypto (no openssl).
func (s *Server) writeFiles() error {
	if err := os.MkdirAll(filepath.Join(s.Dir, "certs"), 0o700); err != nil {
		return err
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "authbridge-harness-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	s.CA = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	srvKeyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		return err
	}
	saKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(&saKey.PublicKey)
	if err != nil {
		return err
	}
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	s.adminToken = hex.EncodeToString(tok)
	files := map[string][]byte{
		"ca.crt":      s.CA,
		"serving.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srvDER}),
		"serving.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: srvKeyDER}),
		"sa.key":      pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(saKey)}),
		"sa.pub":      pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: saPubDER}),
		"tokens.csv":  []byte(s.adminToken + `,harness-admin,harness-admin-uid,"system:masters"` + "\n"),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, name), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func startProcess(bin, logPath string, args ...string) (*exec.Cmd, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Die with the test binary even when it is killed without cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the forking *thread* exits, not the process. Fork
	// from a locked thread that lives exactly as long as the child: threads
	// the Go runtime retires (netns helpers end their locked threads) must
	// not kill the server mid-test.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		_ = cmd.Wait()
		logf.Close()
	}()
	if err := <-started; err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return cmd, nil
}

// waitHTTP polls url until it answers 200, the process exits or the timeout.
func waitHTTP(ctx context.Context, url string, c *http.Client, timeout time.Duration, proc *exec.Cmd) error {
	if c == nil {
		c = &http.Client{Timeout: 2 * time.Second}
	}
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if proc.ProcessState != nil {
			return fmt.Errorf("process exited: %s", proc.ProcessState)
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
		} else {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("not ready after %s: %v", timeout, last)
}

func (s *Server) startErr(what, logPath string, err error) error {
	b, _ := os.ReadFile(logPath)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return fmt.Errorf("%s did not become ready: %w\n--- tail of %s ---\n%s", what, err, logPath, b)
}

func logHas(path, s string) bool {
	b, _ := os.ReadFile(path)
	return bytes.Contains(b, []byte(s))
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func findEtcd() (string, error) {
	if p := os.Getenv("AUTHBRIDGE_ETCD"); p != "" {
		return p, nil
	}
	p, err := exec.LookPath("etcd")
	if err != nil {
		return "", fmt.Errorf("etcd not found on PATH: install Debian's etcd-server with hack/install-deps.sh (or set AUTHBRIDGE_ETCD): %w", err)
	}
	return p, nil
}

// findAPIServer returns AUTHBRIDGE_KUBE_APISERVER or the binary built (and
// cached) by hack/build-kube.sh, running it when needed; the script takes a
// lock, so concurrent callers wait for one build.
//
// The build is deliberately not bounded by the caller's context: a first
// build on a fresh machine takes minutes, longer than any start-up timeout,
// and killing it half way only makes the next run start over. make test and
// make demo build before any timeout starts; this is the fallback for a bare
// `go test`. The script's progress lines go to stderr as they come.
func findAPIServer() (string, error) {
	if p := os.Getenv("AUTHBRIDGE_KUBE_APISERVER"); p != "" {
		return p, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	script := filepath.Join(root, "hack", "build-kube.sh")
	cmd := exec.Command("bash", script, "kube-apiserver")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KUBE_VERSION="+KubeVersion)
	var stderr bytes.Buffer
	cmd.Stderr = io.MultiWriter(os.Stderr, &stderr)
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/build-kube.sh kube-apiserver failed (needs the Go module proxy; or set AUTHBRIDGE_KUBE_APISERVER): %w\n%s", err, tail(stderr.String(), 3000))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	bin := filepath.Join(lines[len(lines)-1], "kube-apiserver")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("hack/build-kube.sh reported %s but: %w", bin, err)
	}
	return bin, nil
}

// RepoRoot walks up from the working directory to the directory holding go.mod.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("repository root (go.mod) not found above the working directory")
		}
		dir = parent
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
