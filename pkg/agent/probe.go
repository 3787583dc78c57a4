package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

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
		ProbedAt:      time.Now().UTC(),
		Results:       results,
		ClusterDNS:    a.clusterDNS(kc),
		NodeResolvers: a.nodeResolvers(kc),
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

// KubeletConfigCandidates are where distributions keep the kubelet's
// KubeletConfiguration, in the order searched (host paths): kubeadm and
// kind; OpenShift/RHCOS; EKS (Amazon Linux 2, then AL2023); GKE. The first
// existing file that is a KubeletConfiguration wins (kubeadm's
// /etc/kubernetes/kubelet.conf is the kubelet's kubeconfig, not its
// configuration, and is skipped by kind).
func KubeletConfigCandidates() []string {
	return []string{
		"/var/lib/kubelet/config.yaml",
		"/etc/kubernetes/kubelet.conf",
		"/etc/kubernetes/kubelet/kubelet-config.json",
		"/etc/kubernetes/kubelet/config.json",
		"/home/kubernetes/kubelet-config.yaml",
	}
}

// KubeletConfig is the part of a KubeletConfiguration the agent uses.
type KubeletConfig struct {
	// Path is the file it was read from (the agent's view).
	Path string
	// ClusterDNS are the cluster DNS service IPs (validated).
	ClusterDNS []string
	// ResolvConf is the host path of the resolv.conf the kubelet gives
	// dnsPolicy Default pods ("" when unset).
	ResolvConf string
	// Err is why the file could not be found or read.
	Err error
}

// kubeletConfig reads the explicit KubeletConfigPath, or searches
// KubeletConfigCandidates under HostRoot.
func (a *Agent) kubeletConfig() KubeletConfig {
	if a.o.KubeletConfigPath != "" {
		kc, err := ReadKubeletConfig(a.o.KubeletConfigPath)
		kc.Path, kc.Err = a.o.KubeletConfigPath, err
		return kc
	}
	if a.o.HostRoot == "" {
		return KubeletConfig{Err: errors.New("no kubelet config path and no host root")}
	}
	return FindKubeletConfig(a.o.HostRoot)
}

// FindKubeletConfig returns the first of KubeletConfigCandidates under
// hostRoot that exists and is a KubeletConfiguration.
func FindKubeletConfig(hostRoot string) KubeletConfig {
	var tried []string
	for _, c := range KubeletConfigCandidates() {
		p := filepath.Join(hostRoot, c)
		b, err := os.ReadFile(p)
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				tried = append(tried, fmt.Sprintf("%s: %v", p, err))
			}
			continue
		}
		var meta struct {
			Kind string `json:"kind"`
		}
		if yaml.Unmarshal(b, &meta) == nil && meta.Kind != "" && meta.Kind != "KubeletConfiguration" {
			continue // e.g. kubeadm's kubelet.conf, a kubeconfig
		}
		kc, err := parseKubeletConfig(p, b)
		kc.Path, kc.Err = p, err
		return kc
	}
	msg := fmt.Sprintf("no kubelet config found under host root %s (tried %s); pass --kubelet-config", hostRoot, strings.Join(KubeletConfigCandidates(), ", "))
	if len(tried) > 0 {
		msg += ": " + strings.Join(tried, "; ")
	}
	return KubeletConfig{Err: errors.New(msg)}
}

// clusterDNS returns the kubelet's clusterDNS, falling back to the agent
// config's clusterDNS.
func (a *Agent) clusterDNS(kc KubeletConfig) []string {
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
func (a *Agent) nodeResolvers(kc KubeletConfig) []string {
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
		ns, err := ReadResolvConf(p)
		if err == nil {
			return ns
		}
		errs = append(errs, err)
	}
	a.log.Warn("cannot read the node's resolv.conf: dnsPolicy Default pods get no DNS exception", "paths", paths, "err", errors.Join(errs...))
	return nil
}

// ReadKubeletConfig reads clusterDNS and resolvConf from a
// KubeletConfiguration file (YAML or JSON).
func ReadKubeletConfig(path string) (KubeletConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return KubeletConfig{}, fmt.Errorf("read kubelet config: %w", err)
	}
	return parseKubeletConfig(path, b)
}

func parseKubeletConfig(path string, b []byte) (KubeletConfig, error) {
	var kc struct {
		ClusterDNS []string `json:"clusterDNS"`
		ResolvConf string   `json:"resolvConf"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return KubeletConfig{}, fmt.Errorf("parse kubelet config %s: %w", path, err)
	}
	out := KubeletConfig{Path: path, ResolvConf: kc.ResolvConf}
	for _, s := range kc.ClusterDNS {
		if _, err := netip.ParseAddr(s); err != nil {
			return KubeletConfig{}, fmt.Errorf("kubelet config %s: clusterDNS %q is not an IP address", path, s)
		}
		out.ClusterDNS = append(out.ClusterDNS, s)
	}
	return out, nil
}

// ReadResolvConf returns the nameserver addresses of a resolv.conf.
func ReadResolvConf(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "nameserver" {
			// Zone suffixes (fe80::1%eth0) are not usable in rules.
			if ip, err := netip.ParseAddr(f[1]); err == nil && ip.Zone() == "" {
				out = append(out, ip.String())
			}
		}
	}
	return out, sc.Err()
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
