package capability

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// ProbeFunc probes the named backends for the given IP families; a backend
// works only if it works for every family (capability.Probe in production).
type ProbeFunc func(ctx context.Context, backends []string, families []redirect.Family) []nodestate.BackendResult

// HostProbePath is the PATH the chrooted probe runs with: the host's
// binaries, found where the plugin (run by the runtime on the host) finds them.
const HostProbePath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// HostProbeChildEnv is set in the chrooted probe's environment, so a binary
// that is not node-agent (a test binary standing in for it) can refuse to
// run as the child instead of re-running itself.
const HostProbeChildEnv = "AUTHBRIDGE_HOST_PROBE_CHILD"

// HostProbeChildChroot is HostProbeChildEnv's value for a chrooted child in
// its own mount namespace: it mounts its own /proc before probing.
const HostProbeChildChroot = "chroot"

// HostProbe runs the capability probe as the plugin will meet the node:
// it re-executes the agent binary (`node-agent probe --raw`) chrooted into
// the host's root, so the iptables backends are proven with the HOST's
// iptables-nft / iptables-legacy binaries and libraries, by a real packet,
// not with the copies in the agent image. nftables needs no binary and is
// probed the same way for one code path.
//
// When the chrooted run cannot start at all (no /proc under the host root,
// an exec error), Fallback is used and a WARN says so: the node is then
// judged by the kernel probe with the image's binaries plus a check that the
// host has each binary (WithHostBinaries).
type HostProbe struct {
	// Exe is the agent binary; "/proc/self/exe" in production (a magic link,
	// followed even from inside the chroot).
	Exe string
	// HostRoot is where the host's / is mounted ("/" on the host: no chroot).
	HostRoot string
	// Timeout bounds one chrooted probe run.
	Timeout  time.Duration
	Fallback ProbeFunc
	Logger   *slog.Logger
}

// Func returns the probe as a ProbeFunc.
func (h HostProbe) Func() ProbeFunc {
	return func(ctx context.Context, backends []string, families []redirect.Family) []nodestate.BackendResult {
		res, err := h.Run(ctx, backends, families)
		if err == nil {
			return res
		}
		if h.Logger != nil {
			h.Logger.Warn("probe in the host root failed to run; judging by the kernel probe with the image's binaries and the host's binary list", "hostRoot", h.HostRoot, "err", err)
		}
		return h.Fallback(ctx, backends, families)
	}
}

// Run executes the chrooted probe and decodes its results.
func (h HostProbe) Run(ctx context.Context, backends []string, families []redirect.Family) ([]nodestate.BackendResult, error) {
	timeout := h.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	fams := make([]string, len(families))
	for i, f := range families {
		fams[i] = string(f)
	}
	cmd := exec.CommandContext(ctx, h.Exe, "probe", "--raw",
		"--backends", strings.Join(backends, ","), "--families", strings.Join(fams, ","))
	// The host's PATH, and the test knob passed through so e2e can force
	// failures (it is counted as a weakening by the agent itself).
	cmd.Env = []string{"PATH=" + HostProbePath, HostProbeChildEnv + "=1"}
	if v, ok := os.LookupEnv(ForceFailEnv); ok {
		cmd.Env = append(cmd.Env, ForceFailEnv+"="+v)
	}
	cmd.Dir = "/"
	if h.HostRoot != "" && h.HostRoot != "/" {
		// The host's /proc belongs to the host's PID namespace, where the
		// agent's PIDs mean nothing; the netns helpers address threads by
		// /proc/<pid>/task/<tid>. So the child gets a mount namespace of its
		// own (Go makes it recursively private: nothing propagates to the
		// host or the agent) and mounts a procfs of its PID namespace there.
		cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: h.HostRoot, Unshareflags: syscall.CLONE_NEWNS}
		cmd.Env[1] = HostProbeChildEnv + "=" + HostProbeChildChroot
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s probe --raw in %s: %v: %s", h.Exe, h.HostRoot, err, strings.TrimSpace(stderr.String()))
	}
	var res []nodestate.BackendResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("probe --raw output: %w", err)
	}
	if len(res) != len(backends) {
		return nil, fmt.Errorf("probe --raw returned %d results for %d backends", len(res), len(backends))
	}
	return res, nil
}
