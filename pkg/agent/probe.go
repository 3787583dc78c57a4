package agent

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
)

// ProbeOnce probes the configured backends, writes the node state file,
// records metrics and (once the plugin is installed) asks for the Node to
// be relabelled. Failures to read DNS settings are logged, not fatal: the
// plugin reports a pod whose resolvers it cannot determine.
func (a *Agent) ProbeOnce(ctx context.Context) nodestate.State {
	results := a.o.Probe(ctx, a.cfg.Backends)
	st := nodestate.State{
		ProbedAt:      time.Now().UTC(),
		Results:       results,
		ClusterDNS:    a.clusterDNS(),
		NodeResolvers: a.nodeResolvers(),
	}
	a.metrics.ObserveProbe(results)
	for _, r := range results {
		if r.Works {
			a.log.Debug("backend works", "backend", r.Backend, "duration", r.Duration)
		} else {
			a.log.Info("backend does not work on this node", "backend", r.Backend, "err", r.Error)
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
	a.log.Info("capability probe done", "egressRedirect", best)
	a.mu.Lock()
	if a.desired == nil {
		a.desired = &nodeDesired{}
	}
	a.desired.setProbe(best, st)
	a.mu.Unlock()
	a.health.setProbed()
	if a.health.isInstalled() {
		a.kickNode()
	}
	return st
}

// clusterDNS reads clusterDNS from the kubelet config file, falling back to
// the agent config's clusterDNS.
func (a *Agent) clusterDNS() []string {
	if a.o.KubeletConfigPath != "" {
		ips, err := ReadKubeletClusterDNS(a.o.KubeletConfigPath)
		if err == nil && len(ips) > 0 {
			return ips
		}
		if len(a.cfg.ClusterDNS) == 0 {
			a.log.Warn("cluster DNS unknown: ClusterFirst pods cannot get their DNS exception; set clusterDNS in the agent config or mount the kubelet config", "kubeletConfig", a.o.KubeletConfigPath, "err", err)
		}
	} else if len(a.cfg.ClusterDNS) == 0 {
		a.log.Warn("cluster DNS unknown: no kubelet config path and no clusterDNS in the agent config")
	}
	return append([]string(nil), a.cfg.ClusterDNS...)
}

func (a *Agent) nodeResolvers() []string {
	if a.o.ResolvConfPath == "" {
		return nil
	}
	ns, err := ReadResolvConf(a.o.ResolvConfPath)
	if err != nil {
		a.log.Warn("cannot read the node's resolv.conf: dnsPolicy Default pods get no DNS exception", "path", a.o.ResolvConfPath, "err", err)
	}
	return ns
}

// ReadKubeletClusterDNS returns clusterDNS from a KubeletConfiguration file.
func ReadKubeletClusterDNS(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read kubelet config: %w", err)
	}
	var kc struct {
		ClusterDNS []string `json:"clusterDNS"`
	}
	if err := yaml.Unmarshal(b, &kc); err != nil {
		return nil, fmt.Errorf("parse kubelet config %s: %w", path, err)
	}
	var out []string
	for _, s := range kc.ClusterDNS {
		if _, err := netip.ParseAddr(s); err != nil {
			return nil, fmt.Errorf("kubelet config %s: clusterDNS %q is not an IP address", path, s)
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("kubelet config %s has no clusterDNS", path)
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
	Time    time.Time                 `json:"time"`
	Best    string                    `json:"egressRedirect"`
	Results []nodestate.BackendResult `json:"results"`
}

func lastProbeJSON(best string, st nodestate.State) string {
	b, _ := json.Marshal(lastProbe{Time: st.ProbedAt, Best: best, Results: st.Results})
	return string(b)
}
