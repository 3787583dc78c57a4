// Package hostdns finds the node's DNS settings from the host's files: the
// kubelet's KubeletConfiguration (clusterDNS, resolvConf), searched where
// distributions keep it, and the nameservers of a resolv.conf. The node
// agent writes what it finds into the node state for the plugin's DNS
// exceptions.
package hostdns

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

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

// KubeletConfig is the part of a KubeletConfiguration the node agent uses.
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
