// Package containerstate is the file the CNI plugin writes for each
// container it set up and the node agent reads: what ADD did (mode,
// reason, backend, rules), so CHECK can verify it and DEL undo it without
// the API server, and the agent can match running pods to their records.
// One small JSON file per container: stateDir/containers/<containerID>.json,
// written under internal/atomicfile's contract.
package containerstate

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/utils"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// Record is what ADD did to one container, so CHECK can verify
// it and DEL can undo it without asking the API server. One small JSON file
// per container: stateDir/containers/<containerID>.json.
type Record struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Netns       string `json:"netns"`
	Namespace   string `json:"namespace,omitempty"`
	Pod         string `json:"pod,omitempty"`
	// PodUID lets the node agent match running pods to their records
	// (pods without rules are reported).
	PodUID string `json:"podUID,omitempty"`
	// Mode is enforce-redirect, cooperative or skip.
	Mode   podmode.Mode   `json:"mode"`
	Reason podmode.Reason `json:"reason,omitempty"`
	// Backend and Spec are set for enforce-redirect.
	Backend   string         `json:"backend,omitempty"`
	Spec      *redirect.Spec `json:"spec,omitempty"`
	AppliedAt time.Time      `json:"appliedAt"`
}

// Dir is the records' directory inside the state dir.
const Dir = "containers"

// RepairPrefix starts the container ID of a record the node agent wrote
// when it programmed a running pod's rules in place (the plugin never saw
// the pod's ADD): "repair-<podUID>". The runtime never passes such an ID,
// so the plugin's GC keeps these records (the agent prunes them when the
// pod is gone) and its DEL of any sandbox of the pod removes it.
const RepairPrefix = "repair-"

// RepairID is the container ID of the in-place repair record of a pod.
func RepairID(podUID string) string { return RepairPrefix + podUID }

// IsRepair reports whether containerID names an in-place repair record.
func IsRepair(containerID string) bool { return strings.HasPrefix(containerID, RepairPrefix) }

// Path is the record file of containerID; an ID that could escape the
// directory is an error.
func Path(stateDir, containerID string) (string, error) {
	// The container ID becomes a file name: refuse anything that could
	// escape the directory.
	if err := utils.ValidateContainerID(containerID); err != nil {
		return "", fmt.Errorf("container ID %q: %v", containerID, err.Msg)
	}
	return filepath.Join(stateDir, Dir, containerID+".json"), nil
}

// Write replaces the record under atomicfile's contract so a
// concurrent CHECK or a crash never sees half a file.
func Write(stateDir string, s Record) error {
	path, err := Path(stateDir, s.ContainerID)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create container state dir %s: %w", dir, err)
	}
	if err := atomicfile.Write(path, b, 0o600); err != nil {
		return fmt.Errorf("write container state: %w", err)
	}
	return nil
}

// Read returns (nil, nil) when there is no record.
func Read(stateDir, containerID string) (*Record, error) {
	path, err := Path(stateDir, containerID)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read container state %s: %w", path, err)
	}
	var s Record
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("container state %s is corrupt: %w", path, err)
	}
	return &s, nil
}

// Remove deletes the record; a missing one is not an error.
func Remove(stateDir, containerID string) error {
	path, err := Path(stateDir, containerID)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container state %s: %w", path, err)
	}
	return nil
}

// GC removes the records of containers not in keep and
// returns the removed container IDs. Only *.json records are touched, and
// never in-place repair records (IsRepair): the runtime does not know
// their IDs; the node agent prunes them.
func GC(stateDir string, keep map[string]bool) ([]string, error) {
	dir := filepath.Join(stateDir, Dir)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list container states in %s: %w", dir, err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || !strings.HasSuffix(name, ".json") {
			continue
		}
		id := strings.TrimSuffix(name, ".json")
		if keep[id] || IsRepair(id) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, id)
	}
	return removed, errors.Join(errs...)
}

// ReadAll reads every record, keyed by file name; records removed or
// half-written meanwhile (a concurrent DEL) are skipped. A missing
// directory is no records.
func ReadAll(stateDir string) (map[string]Record, error) {
	dir := filepath.Join(stateDir, Dir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read plugin state dir %s: %w", dir, err)
	}
	out := map[string]Record{}
	for _, e := range ents {
		if e.IsDir() || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // removed by a concurrent DEL
		}
		var s Record
		if json.Unmarshal(b, &s) != nil {
			continue
		}
		out[e.Name()] = s
	}
	return out, nil
}
