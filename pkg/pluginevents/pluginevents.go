// Package pluginevents carries the CNI plugin's outcomes to the node agent,
// which turns them into Prometheus metrics and Kubernetes Events.
//
// Transport: one JSON datagram per event on a unix datagram socket in the
// agent's state dir. Datagrams need no connection state and a send never
// blocks the plugin for long: when the agent is not listening the send fails
// fast and the plugin only logs it (metrics must never fail a pod).
package pluginevents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kagenti/authbridge-node/internal/unixsock"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// SocketName is the socket's name inside the agent's state dir.
const SocketName = "plugin-events.sock"

// Op is the CNI verb of one invocation.
type Op string

const (
	OpAdd    Op = "ADD"
	OpDel    Op = "DEL"
	OpCheck  Op = "CHECK"
	OpStatus Op = "STATUS"
	OpGC     Op = "GC"
)

// Ops lists every verb (the values of authbridge_cni_operations_total{op}).
var Ops = []Op{OpAdd, OpDel, OpCheck, OpStatus, OpGC}

// Result is an invocation's outcome.
type Result string

const (
	Success Result = "success"
	Failure Result = "failure"
)

// Event is one plugin invocation's outcome.
type Event struct {
	Op     Op     `json:"op"`
	Result Result `json:"result"`
	// Mode the pod ended up in, as podmode.Mode.Label(): enforce-redirect,
	// cooperative, or skipped (no AuthBridge sidecar, or not a pod).
	Mode string `json:"mode,omitempty"`
	// Reason for the mode; for a cooperative pod one of
	// podmode.CooperativeReasons: annotation, namespace-configmap,
	// cluster-default, auto-incapable-node, vm-runtime-class, sandboxed-runtime.
	Reason    podmode.Reason `json:"reason,omitempty"`
	Backend   string         `json:"backend,omitempty"`
	Namespace string         `json:"namespace,omitempty"`
	Pod       string         `json:"pod,omitempty"`
	Message   string         `json:"message,omitempty"`
	Seconds   float64        `json:"seconds"`
}

// Send delivers one event, giving up after a short deadline.
func Send(socketPath string, ev Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return err
	}
	conn, err := net.DialTimeout("unixgram", socketPath, 200*time.Millisecond)
	if err != nil {
		return fmt.Errorf("plugin events socket %s: %w", socketPath, err)
	}
	defer conn.Close()
	_ = conn.SetWriteDeadline(time.Now().Add(200 * time.Millisecond))
	_, err = conn.Write(b)
	return err
}

// Listener is the agent's end of the socket.
type Listener struct {
	pc   net.PacketConn
	path string
}

// Listen creates the socket, mode 0600, with internal/unixsock's
// guarantees (stale socket replaced, any other file refused, never
// reachable with a wider mode, removed on Close unless a newer agent's
// socket is there): once it returns, plugins can send. Serve reads from it.
func Listen(socketPath string) (*Listener, error) {
	pc, err := unixsock.ListenPacket(socketPath)
	if err != nil {
		return nil, fmt.Errorf("plugin events %w", err)
	}
	return &Listener{pc: pc, path: socketPath}, nil
}

// Path is the socket's path.
func (l *Listener) Path() string { return l.path }

// Serve receives events until ctx ends (then closes the socket and returns
// nil), calling handle for each valid one; malformed datagrams are dropped.
func (l *Listener) Serve(ctx context.Context, handle func(Event)) error {
	stop := context.AfterFunc(ctx, func() { l.pc.Close() })
	defer stop()
	defer l.pc.Close()
	buf := make([]byte, 64*1024)
	for {
		n, _, err := l.pc.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("read plugin event: %w", err)
		}
		var ev Event
		if json.Unmarshal(buf[:n], &ev) == nil && ev.Op != "" {
			handle(ev)
		}
	}
}

// Close closes the socket (a Listener never served).
func (l *Listener) Close() error { return l.pc.Close() }
