package pluginevents

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// TestListenSendServe: once Listen returns, a Send reaches Serve's handler
// over the real socket (no wait for the socket to appear); malformed
// datagrams are dropped; cancelling ctx ends Serve with nil.
func TestListenSendServe(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	// A regular file is not the agent's to remove: refused, kept.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), "non-socket") {
		t.Fatalf("Listen over a regular file = %v; want a non-socket error", err)
	}
	os.Remove(path)
	// A stale socket from a previous agent (SIGKILL leaves it) is replaced.
	stale, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	stale.Close()
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode: %v %v", fi, err)
	}
	want := Event{Op: OpAdd, Result: Success, Mode: podmode.Cooperative.Label(), Reason: podmode.ReasonVMRuntimeClass, Namespace: "ns", Pod: "p", Seconds: 0.5}
	if err := Send(path, want); err != nil {
		t.Fatal(err)
	}
	// Sent before Serve starts: the datagram waits in the socket buffer.
	got := make(chan Event, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Serve(ctx, func(ev Event) { got <- ev }) }()
	if ev := <-got; ev != want {
		t.Fatalf("got %+v, want %+v", ev, want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket left after Serve stopped: %v", err)
	}
	if err := Send(path, want); err == nil {
		t.Error("Send succeeded after the listener stopped")
	}
}
