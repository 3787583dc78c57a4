// Package decision is the one contract between the authbridge-cni plugin
// and the node agent for the inputs of a pod's decision: the plugin asks
// over a unix socket in the state dir (SocketName, mode 0600, root only)
// and the agent answers from its node-scoped informer cache, so an ADD
// makes no API request while the agent is up (the Istio ambient
// plugin-to-agent pattern). The agent answers with what the decision needs
// (the pod and the namespace's runtime config document); the plugin still
// decides itself with podinfo.Decide, its own policy and the node state,
// so there is one decision function and the agent cannot widen it.
//
// Wire format: one JSON Request, one JSON Response, then the connection is
// closed. Query bounds the whole exchange with its context.
package decision

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// SocketName is the socket's file name in the state dir.
const SocketName = "decision.sock"

// DefaultWait is how long the agent waits for a pod its cache has not seen
// yet (the watch event usually arrives within milliseconds of the
// scheduler's binding, before the kubelet even creates the sandbox) before
// it reads the pod from the API server.
const DefaultWait = 2 * time.Second

// DefaultServeTimeout bounds one exchange on the agent's side: the wait,
// then the API read.
const DefaultServeTimeout = 3500 * time.Millisecond

// Request asks for a pod's decision inputs. UID, when set, is the pod the
// runtime is creating: a cached pod with another UID is an older
// incarnation and is not answered from the cache.
type Request struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	UID       string `json:"uid,omitempty"`
}

// Response carries the inputs, or why there are none.
type Response struct {
	// Pod is the pod as the agent knows it; nil with Error set.
	Pod *corev1.Pod `json:"pod,omitempty"`
	// NamespaceConfig is the config.yaml key of the namespace's
	// authbridge-runtime-config ConfigMap; nil when there is no such
	// ConfigMap or key. The plugin parses it (podinfo.ParseNamespaceConfig).
	NamespaceConfig *string `json:"namespaceConfig,omitempty"`
	// RuntimeHandler is the handler of the pod's RuntimeClass, set when the
	// pod names one (the plugin gives rules only to handlers whose traffic
	// crosses the pod netns: netfilterRuntimeHandlers).
	RuntimeHandler *string `json:"runtimeHandler,omitempty"`
	// Source says where the agent got the pod: SourceCache or SourceAPI.
	Source string `json:"source,omitempty"`
	// Error is set when the agent could not answer (the pod is not in its
	// cache and reading it from the API failed); the plugin then asks the
	// API itself.
	Error string `json:"error,omitempty"`
}

// Sources of an answer.
const (
	SourceCache = "cache"
	SourceAPI   = "api"
)

// ErrUnavailable wraps every failure to get an answer from the agent (no
// socket, nobody listening, timeout, garbled reply): the plugin falls back
// to the API.
var ErrUnavailable = errors.New("node agent decision socket unavailable")

// Query asks the agent listening on socketPath. Any failure to exchange is
// returned wrapping ErrUnavailable; an answer with Error set is returned as
// is (err nil).
func Query(ctx context.Context, socketPath string, req Request) (Response, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", socketPath)
	if err != nil {
		return Response{}, fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return Response{}, fmt.Errorf("%w: send request: %v", ErrUnavailable, err)
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(c, maxMessage)).Decode(&resp); err != nil {
		return Response{}, fmt.Errorf("%w: read answer: %v", ErrUnavailable, err)
	}
	return resp, nil
}

// maxMessage bounds what either side reads (a pod object is a few KiB).
const maxMessage = 4 << 20

// Handler answers one request; the server bounds it with WaitBudget plus
// the time to fetch.
type Handler func(ctx context.Context, req Request) Response

// Serve answers requests on ln until ctx ends (then it closes ln and
// returns nil). Each connection is served on its own goroutine with
// timeout as the bound of the whole exchange.
func Serve(ctx context.Context, ln net.Listener, h Handler, timeout time.Duration) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				// Closed by the goroutine above; close again so the socket
				// file is gone when Serve returns.
				_ = ln.Close()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept on decision socket: %w", err)
		}
		go serveConn(ctx, c, h, timeout)
	}
}

func serveConn(ctx context.Context, c net.Conn, h Handler, timeout time.Duration) {
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_ = c.SetDeadline(time.Now().Add(timeout))
	var req Request
	if err := json.NewDecoder(io.LimitReader(c, maxMessage)).Decode(&req); err != nil {
		_ = json.NewEncoder(c).Encode(Response{Error: "malformed request: " + err.Error()})
		return
	}
	if req.Namespace == "" || req.Name == "" {
		_ = json.NewEncoder(c).Encode(Response{Error: "request needs namespace and name"})
		return
	}
	_ = json.NewEncoder(c).Encode(h(ctx, req))
}
