// Package runtimehandler reads the container runtime's default handler
// (the handler of pods without a RuntimeClass) from the runtime's config
// files under the host root, for the node state: a node whose default
// handler is a sandbox (gVisor's runsc, a Kata VM) must not report its
// pods as enforced by rules in the pod netns.
package runtimehandler

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// Config files read, relative to the host root. containerd's main file
// (1.x and 2.x name the key default_runtime_name in their CRI section);
// CRI-O's main file, then its drop-ins in name order, later ones winning.
const (
	ContainerdConfig = "etc/containerd/config.toml"
	CRIOConfig       = "etc/crio/crio.conf"
	CRIODropInDir    = "etc/crio/crio.conf.d"
)

// ContainerdBuiltinDefault is containerd's default handler when its config
// does not name one.
const ContainerdBuiltinDefault = "runc"

var (
	containerdKey = regexp.MustCompile(`^\s*default_runtime_name\s*=\s*["']([^"']*)["']`)
	crioKey       = regexp.MustCompile(`^\s*default_runtime\s*=\s*["']([^"']*)["']`)
)

// Default returns the default handler and the file it came from. containerd
// wins when both runtimes' configs exist (a node runs one; a stale file of
// the other is less likely under /etc/containerd). A containerd config
// without the key means containerd's built-in "runc"; a CRI-O config
// without it, or no config at all, gives "" (unknown), which the policy's
// netfilterRuntimeHandlers decides about.
func Default(hostRoot string) (handler, source string, err error) {
	path := filepath.Join(hostRoot, ContainerdConfig)
	h, found, err := scan(path, containerdKey)
	switch {
	case err != nil:
		return "", "", err
	case found:
		return h, path, nil
	}
	if _, err := os.Stat(path); err == nil {
		return ContainerdBuiltinDefault, path + " (no default_runtime_name: containerd's built-in default)", nil
	}
	files := []string{filepath.Join(hostRoot, CRIOConfig)}
	dropIns, err := filepath.Glob(filepath.Join(hostRoot, CRIODropInDir, "*.conf"))
	if err != nil {
		return "", "", fmt.Errorf("list %s: %w", CRIODropInDir, err)
	}
	sort.Strings(dropIns)
	files = append(files, dropIns...)
	for _, f := range files {
		h2, found, err := scan(f, crioKey)
		if err != nil {
			return "", "", err
		}
		if found {
			h, source = h2, f
		}
	}
	return h, source, nil
}

// scan returns the value of the last line matching key in path; a missing
// file is not an error.
func scan(path string, key *regexp.Regexp) (value string, found bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("read runtime config %s: %w", path, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := key.FindStringSubmatch(sc.Text()); m != nil {
			value, found = m[1], true
		}
	}
	if err := sc.Err(); err != nil {
		return "", false, fmt.Errorf("read runtime config %s: %w", path, err)
	}
	return value, found, nil
}
