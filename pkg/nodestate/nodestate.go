// Package nodestate is the file the node agent writes and the CNI plugin
// reads: which redirect backends work on this node, and the cluster DNS IPs.
// A file, not an API call, so the plugin's ADD path needs no extra round trip.
package nodestate

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
)

// FileName is the state file's name inside the agent's state dir.
const FileName = "node-state.json"

// BackendResult is one backend's probe outcome.
type BackendResult struct {
	Backend string `json:"backend"`
	Works   bool   `json:"works"`
	// Error is the kernel's (or binary's) error when the backend failed.
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration"`
}

// State is the node state file's content.
type State struct {
	ProbedAt time.Time       `json:"probedAt"`
	Results  []BackendResult `json:"results"`
	// ClusterDNS are the cluster DNS service IPs (kubelet clusterDNS).
	ClusterDNS []string `json:"clusterDNS,omitempty"`
	// NodeResolvers are the nameservers of the node's resolv.conf, used for
	// dnsPolicy Default.
	NodeResolvers []string `json:"nodeResolvers,omitempty"`
	// DefaultRuntimeHandler is the container runtime's default handler
	// (containerd default_runtime_name, CRI-O default_runtime), the handler
	// of pods without a RuntimeClass; "" when the agent could not read it.
	DefaultRuntimeHandler string `json:"defaultRuntimeHandler,omitempty"`
}

// Working returns the working backends in the given preference order.
func (s State) Working(preference []string) []string {
	ok := map[string]bool{}
	for _, r := range s.Results {
		if r.Works {
			ok[r.Backend] = true
		}
	}
	var out []string
	for _, b := range preference {
		if ok[b] {
			out = append(out, b)
		}
	}
	return out
}

// Read loads the state file; a missing file is an error that says the agent
// has not probed this node yet.
func Read(path string) (State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return State{}, fmt.Errorf("node state %s missing: the authbridge node agent has not probed this node yet (is its DaemonSet pod running here?)", path)
		}
		return State{}, fmt.Errorf("read node state: %w", err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return State{}, fmt.Errorf("node state %s is corrupt (the agent rewrites it on its next probe): %w", path, err)
	}
	return s, nil
}

// Write replaces the state file under atomicfile's contract (the plugin
// never reads half a file, and a crash keeps the old or the new one).
func Write(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	if err := atomicfile.Write(path, b, 0o644); err != nil {
		return fmt.Errorf("write node state: %w", err)
	}
	return nil
}
