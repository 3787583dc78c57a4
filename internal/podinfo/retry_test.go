package podinfo

import (
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
)

// flakyFront is a TCP front for the real API server that drops the first
// `drop` connections (as a restarting API server or a lost route does),
// then forwards. It counts connections.
type flakyFront struct {
	addr  string
	conns atomic.Int32
}

func newFlakyFront(t *testing.T, drop int32) *flakyFront {
	srv := apiserver.Shared(t)
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &flakyFront{addr: l.Addr().String()}
	target := strings.TrimPrefix(srv.URL, "https://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			if f.conns.Add(1) <= drop {
				c.Close()
				continue
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c) }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return f
}

// Transient failures (the connection dropped) are retried with backoff
// within the budget, and the read succeeds; a refusal (Forbidden) is not
// retried.
func TestKubeSourceRetriesTransientErrors(t *testing.T) {
	srv := apiserver.Shared(t)
	cs := admin(t)
	mustCreate(t, cs, "ns-retry", apiPod("agent", nil))
	f := newFlakyFront(t, 3)
	kc := strings.Replace(string(srv.AdminKubeconfig()), srv.URL, "https://"+f.addr, 1)
	src, err := NewKubeSource(writeKubeconfig(t, []byte(kc)), 0)
	if err != nil {
		t.Fatal(err)
	}
	pod, err := src.GetPod(context.Background(), "ns-retry", "agent")
	if err != nil {
		t.Fatalf("GetPod through 3 dropped connections: %v", err)
	}
	if pod.Name != "agent" || f.conns.Load() < 4 {
		t.Fatalf("pod %q after %d connections; want the pod after at least 4", pod.Name, f.conns.Load())
	}

	// Forbidden: one attempt, no retry (the error says "(N attempts)" only
	// when it retried).
	tok, err := srv.ServiceAccountToken(context.Background(), "ns-retry", "nobody", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	g := newFlakyFront(t, 0)
	kc = strings.Replace(string(srv.Kubeconfig(tok)), srv.URL, "https://"+g.addr, 1)
	src, err = NewKubeSource(writeKubeconfig(t, []byte(kc)), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = src.GetPod(context.Background(), "ns-retry", "agent")
	if !apierrors.IsForbidden(err) || strings.Contains(err.Error(), "attempts") {
		t.Fatalf("forbidden read = %v; want Forbidden without retries", err)
	}

	// Down for good: the budget ends the retries and the error says how
	// many attempts were made.
	h := newFlakyFront(t, 1<<30)
	kc = strings.Replace(string(srv.AdminKubeconfig()), srv.URL, "https://"+h.addr, 1)
	src, err = NewKubeSource(writeKubeconfig(t, []byte(kc)), 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = src.GetPod(ctx, "ns-retry", "agent")
	if err == nil || !strings.Contains(err.Error(), "attempts)") || !strings.Contains(err.Error(), "cannot reach the Kubernetes API server") {
		t.Fatalf("read from a server that is down = %v", err)
	}
	// (client-go itself also retries a GET whose connection was dropped,
	// after 1 s, so connections are fewer than attempts.)
	if n := h.conns.Load(); n < 2 {
		t.Fatalf("%d connections in 2 s; want retries", n)
	}
}
