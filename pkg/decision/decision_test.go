package decision

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The socket is 0600, replaces a stale socket, refuses to replace anything
// else, and is removed on Close; one request gets one answer.
func TestListenServeQuery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, SocketName)
	// A stale socket (a killed agent's) is replaced.
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()
	ln, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %v %v; want a 0600 socket", fi, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, func(_ context.Context, req Request) Response {
			cm := "egressEnforcement: auto\n"
			return Response{Pod: &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: req.Namespace, Name: req.Name, UID: "u1"}}, NamespaceConfig: &cm, Source: SourceCache}
		}, time.Second)
	}()
	qctx, qcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer qcancel()
	r, err := Query(qctx, path, Request{Namespace: "team", Name: "agent", UID: "u1"})
	if err != nil || r.Pod == nil || r.Pod.Name != "agent" || r.Source != SourceCache || r.NamespaceConfig == nil {
		t.Fatalf("Query = %+v, %v", r, err)
	}
	if r, err := Query(qctx, path, Request{Name: "agent"}); err != nil || !strings.Contains(r.Error, "namespace and name") {
		t.Fatalf("Query without namespace = %+v, %v; want an error answer", r, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket left after the server stopped: %v", err)
	}
	// No agent: ErrUnavailable (the plugin falls back to the API).
	if _, err := Query(qctx, path, Request{Namespace: "team", Name: "agent"}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Query without an agent = %v; want ErrUnavailable", err)
	}
	// A regular file in the way is not removed.
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "non-socket") {
		t.Fatalf("Listen over a regular file = %v", err)
	}
}
