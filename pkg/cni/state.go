package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/utils"

	"github.com/kagenti/authbridge-node/pkg/atomicfile"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// ContainerState records what ADD did to one container, so CHECK can verify
// it and DEL can undo it without asking the API server. One small JSON file
// per container: stateDir/containers/<containerID>.json.
type ContainerState struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Netns       string `json:"netns"`
	Namespace   string `json:"namespace,omitempty"`
	Pod         string `json:"pod,omitempty"`
	// PodUID lets the node agent match running pods to their records
	// (pods without rules are reported).
	PodUID string `json:"podUID,omitempty"`
	// Mode is enforce-redirect, cooperative or skip.
	Mode   string `json:"mode"`
	Reason string `json:"reason,omitempty"`
	// Backend and Spec are set for enforce-redirect.
	Backend   string         `json:"backend,omitempty"`
	Spec      *redirect.Spec `json:"spec,omitempty"`
	AppliedAt time.Time      `json:"appliedAt"`
}

const containersDir = "containers"

func containerStatePath(stateDir, containerID string) (string, error) {
	// The container ID becomes a file name: refuse anything that could
	// escape the directory.
	if err := utils.ValidateContainerID(containerID); err != nil {
		return "", fmt.Errorf("container ID %q: %v", containerID, err.Msg)
	}
	return filepath.Join(stateDir, containersDir, containerID+".json"), nil
}

// writeContainerState replaces the file under atomicfile's contract so a
// concurrent CHECK or a crash never sees half a file.
func writeContainerState(stateDir string, s ContainerState) error {
	path, err := containerStatePath(stateDir, s.ContainerID)
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

// readContainerState returns (nil, nil) when there is no record.
func readContainerState(stateDir, containerID string) (*ContainerState, error) {
	path, err := containerStatePath(stateDir, containerID)
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
	var s ContainerState
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("container state %s is corrupt: %w", path, err)
	}
	return &s, nil
}

func removeContainerState(stateDir, containerID string) error {
	path, err := containerStatePath(stateDir, containerID)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove container state %s: %w", path, err)
	}
	return nil
}

// gcContainerStates removes the records of containers not in keep and
// returns the removed container IDs. Only *.json records are touched.
func gcContainerStates(stateDir string, keep map[string]bool) ([]string, error) {
	dir := filepath.Join(stateDir, containersDir)
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
		if keep[id] {
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
