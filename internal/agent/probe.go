package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/kagenti/authbridge-node/internal/hostdns"
	"github.com/kagenti/authbridge-node/internal/runtimehandler"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// ProbeOnce probes the configured backends for the host's IP families,
// writes the node state file, records metrics and (once the plugin is
// installed) asks for the Node to be relabelled. Failures to read DNS
// settings are logged, not fatal: the plugin reports a pod whose resolvers
// it cannot determine.
func (a *Agent) ProbeOnce(ctx context.Context) nodestate.State {
	families, err := ProbeFamilies(a.o.IPv6DisabledPath)
	if err != nil {
		a.log.Warn("cannot tell whether the host has IPv6; probing IPv4 only", "err", err)
	}
	results := a.o.Probe(ctx, a.cfg.Backends, families)
	kc := a.kubeletConfig()
	st := nodestate.State{
		ProbedAt:              time.Now().UTC(),
		Results:               results,
		ClusterDNS:            a.clusterDNS(kc),
		NodeResolvers:         a.nodeResolvers(kc),
		DefaultRuntimeHandler: a.defaultRuntimeHandler(),
	}
	a.metrics.ObserveProbe(results)
	for _, r := range results {
		if r.Works {
			a.log.Debug("backend works", "backend", r.Backend, "duration", r.Duration)
		} else {
			a.log.Info("backend does not work on this node", "backend", r.Backend, "families", families, "err", r.Error)
		}
	}
	if err := nodestate.Write(a.StatePath(), st); err != nil {
		// Without the file the plugin fails enforce-redirect ADDs; stay unready.
		a.log.Error("cannot write node state file", "path", a.StatePath(), "err", err)
		return st
	}
	best := BackendNone
	if w := st.Working(a.cfg.Backends); len(w) > 0 {
		best = w[0]
	}
	a.log.Info("capability probe done", "egressRedirect", best, "families", families)
	a.mu.Lock()
	if a.desired == nil {
		a.desired = &nodeDesired{}
	}
	a.desired.setProbe(best, st, families)
	a.mu.Unlock()
	a.health.setProbed()
	if a.health.isInstalled() {
		a.kickNode()
	}
	return st
}

// defaultRuntimeHandler reads the runtime's default handler under HostRoot
// (the handler of pods without a RuntimeClass); "" when unknown, which
// netfilterRuntimeHandlers decides about.
func (a *Agent) defaultRuntimeHandler() string {
	if a.o.HostRoot == "" {
		return ""
	}
	h, src, err := runtimehandler.Default(a.o.HostRoot)
	if err != nil {
		a.log.Warn("cannot read the container runtime's default handler; pods without a RuntimeClass count as handler \"\"", "err", err)
		return ""
	}
	a.log.Debug("container runtime default handler", "handler", h, "source", src)
	return h
}

// kubeletConfig reads the explicit KubeletConfigPath, or searches
// hostdns.KubeletConfigCandidates under HostRoot.
func (a *Agent) kubeletConfig() hostdns.KubeletConfig {
	if a.o.KubeletConfigPath != "" {
		kc, err := hostdns.ReadKubeletConfig(a.o.KubeletConfigPath)
		kc.Path, kc.Err = a.o.KubeletConfigPath, err
		return kc
	}
	if a.o.HostRoot == "" {
		return hostdns.KubeletConfig{Err: errors.New("no kubelet config path and no host root")}
	}
	return hostdns.FindKubeletConfig(a.o.HostRoot)
}

// clusterDNS returns the kubelet's clusterDNS, falling back to the agent
// config's clusterDNS.
func (a *Agent) clusterDNS(kc hostdns.KubeletConfig) []string {
	if kc.Err == nil && len(kc.ClusterDNS) > 0 {
		return kc.ClusterDNS
	}
	if len(a.cfg.ClusterDNS) == 0 {
		err := kc.Err
		if err == nil {
			err = fmt.Errorf("kubelet config %s has no clusterDNS", kc.Path)
		}
		a.log.Warn("cluster DNS unknown: ClusterFirst pods cannot get their DNS exception; set clusterDNS in the agent config or pass --kubelet-config", "kubeletConfig", kc.Path, "err", err)
	}
	return append([]string(nil), a.cfg.ClusterDNS...)
}

// nodeResolvers reads the explicit ResolvConfPath, else the kubelet's
// resolvConf under HostRoot (e.g. /run/systemd/resolve/resolv.conf on
// systemd-resolved nodes, where /etc/resolv.conf names the 127.0.0.53
// stub that pods cannot use), else the host's /etc/resolv.conf.
func (a *Agent) nodeResolvers(kc hostdns.KubeletConfig) []string {
	var paths []string
	switch {
	case a.o.ResolvConfPath != "":
		paths = []string{a.o.ResolvConfPath}
	case a.o.HostRoot != "":
		if kc.Err == nil && kc.ResolvConf != "" {
			paths = append(paths, filepath.Join(a.o.HostRoot, kc.ResolvConf))
		}
		paths = append(paths, filepath.Join(a.o.HostRoot, "etc/resolv.conf"))
	default:
		return nil
	}
	var errs []error
	for _, p := range paths {
		ns, err := hostdns.ReadResolvConf(p)
		if err == nil {
			return ns
		}
		errs = append(errs, err)
	}
	a.log.Warn("cannot read the node's resolv.conf: dnsPolicy Default pods get no DNS exception", "paths", paths, "err", errors.Join(errs...))
	return nil
}

// lastProbe is the last-probe annotation's JSON.
type lastProbe struct {
	Time time.Time `json:"time"`
	Best string    `json:"egressRedirect"`
	// Families are the IP families every backend was probed for.
	Families []redirect.Family         `json:"families"`
	Results  []nodestate.BackendResult `json:"results"`
}

func lastProbeJSON(best string, st nodestate.State, families []redirect.Family) string {
	b, _ := json.Marshal(lastProbe{Time: st.ProbedAt, Best: best, Families: families, Results: st.Results})
	return string(b)
}
