package cni

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	"golang.org/x/sys/unix"

	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
)

// status is STATUS's body. A runtime that calls CNI 1.1 STATUS reports the
// node's network NotReady when it fails: nothing schedules there and, after
// the default 300 s toleration, every pod is evicted. So STATUS fails only
// when the plugin itself cannot work for any pod (the config did not parse,
// which begin already reported, or the state dir cannot hold the container
// records ADD and DEL need). Whether a redirect backend works, or whether
// the agent has probed yet, is not STATUS's business: the capability labels
// steer scheduling, and ADD fails closed for a pod that needs enforcement
// while non-AuthBridge pods start.
func (p *Plugin) status(conf *Conf, log *slog.Logger, r *record) error {
	if err := stateDirUsable(conf.StateDir); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, "authbridge-cni not ready: "+err.Error(),
			"make stateDir (the authbridge node agent config's stateDir) a writable directory on the host; the agent creates it")
	}
	st, err := nodestate.Read(filepath.Join(conf.StateDir, nodestate.FileName))
	if err != nil {
		// Reported, not failed: only pods that need enforcement wait for it.
		log.Debug("node state not available yet; pods that need enforcement fail closed until the agent has probed", "err", err)
		return nil
	}
	working := st.Working(conf.Policy.Backends)
	if len(working) == 0 {
		log.Debug("no redirect backend works on this node; pods that need enforcement fail closed, auto pods run cooperatively where allowed",
			"probe", podinfo.ProbeSummary(st, conf.Policy.Backends))
		return nil
	}
	r.backend = working[0]
	return nil
}

// stateDirUsable: ADD writes stateDir/containers/<id>.json and DEL removes
// it; without a writable directory no pod can be set up or torn down.
func stateDirUsable(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// tmpfs after a reboot: the agent recreates it, and so can we.
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("state dir %s does not exist and cannot be created: %w", dir, err)
		}
	case err != nil:
		return fmt.Errorf("state dir %s: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("state dir %s is not a directory", dir)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return fmt.Errorf("state dir %s is not writable: %w", dir, err)
	}
	return nil
}
