package podinfo

import (
	"errors"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
)

// Resolvers returns the DNS servers the pod will use, derived like the
// kubelet does from dnsPolicy and dnsConfig:
//
//	ClusterFirst, ClusterFirstWithHostNet (and unset): policy.ClusterDNS if
//	    set, else the node state's ClusterDNS (the kubelet's clusterDNS);
//	Default: the node state's NodeResolvers (the node's resolv.conf);
//	None:    dnsConfig.nameservers only.
//
// dnsConfig.nameservers are appended for the other policies too. The result
// is de-duplicated, in order. state may be nil.
//
// DNS to a resolver goes direct (unproxied, TCP+UDP 53), so a nameserver the
// pod itself names (dnsConfig.nameservers, with any dnsPolicy) is accepted
// only when it is a cluster DNS IP (policy or node state), a node resolver,
// or inside the policy's allowedPodNameservers; otherwise Resolvers returns
// an error wrapping ErrPodNameserverNotAllowed (the ADD fails closed).
// ErrPodNameserverNotAllowed: the pod names a nameserver the admin did not allow.
var ErrPodNameserverNotAllowed = errors.New("pod-named nameserver not allowed")

func Resolvers(pod *corev1.Pod, policy config.Policy, state *nodestate.State) ([]netip.Addr, error) {
	var out []netip.Addr
	seen := map[netip.Addr]bool{}
	add := func(list []string, from string) error {
		for _, s := range list {
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("pod %s/%s: resolver %q from %s is not an IP address: %w", pod.Namespace, pod.Name, s, from, err)
			}
			a = a.Unmap()
			if !seen[a] {
				seen[a] = true
				out = append(out, a)
			}
		}
		return nil
	}
	policyName := pod.Spec.DNSPolicy
	if policyName == "" {
		policyName = corev1.DNSClusterFirst
	}
	switch policyName {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		var err error
		switch {
		case len(policy.ClusterDNS) > 0:
			err = add(policy.ClusterDNS, "the plugin config's clusterDNS")
		case state != nil && len(state.ClusterDNS) > 0:
			err = add(state.ClusterDNS, "the node state's clusterDNS")
		default:
			return nil, fmt.Errorf("pod %s/%s has dnsPolicy %s but the cluster DNS IPs are unknown: "+
				"the node agent found no clusterDNS in the kubelet config; set clusterDNS in the authbridge node agent config", pod.Namespace, pod.Name, policyName)
		}
		if err != nil {
			return nil, err
		}
	case corev1.DNSDefault:
		if state != nil {
			if err := add(state.NodeResolvers, "the node state's nodeResolvers"); err != nil {
				return nil, err
			}
		}
	case corev1.DNSNone:
	default:
		return nil, fmt.Errorf("pod %s/%s: unknown dnsPolicy %q", pod.Namespace, pod.Name, policyName)
	}
	if pod.Spec.DNSConfig != nil {
		if err := checkPodNameservers(pod, policy, state); err != nil {
			return nil, err
		}
		if err := add(pod.Spec.DNSConfig.Nameservers, "the pod's dnsConfig.nameservers"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// checkPodNameservers refuses pod-named nameservers outside what the admin
// controls: cluster DNS IPs, node resolvers, allowedPodNameservers.
func checkPodNameservers(pod *corev1.Pod, policy config.Policy, state *nodestate.State) error {
	allowed := map[netip.Addr]bool{}
	trusted := [][]string{policy.ClusterDNS}
	if state != nil {
		trusted = append(trusted, state.ClusterDNS, state.NodeResolvers)
	}
	for _, list := range trusted {
		for _, s := range list {
			if a, err := netip.ParseAddr(s); err == nil {
				allowed[a.Unmap()] = true
			}
		}
	}
	var prefixes []netip.Prefix
	for _, c := range policy.AllowedPodNameservers {
		if p, err := netip.ParsePrefix(c); err == nil {
			prefixes = append(prefixes, p.Masked())
		}
	}
	for _, s := range pod.Spec.DNSConfig.Nameservers {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return fmt.Errorf("pod %s/%s: resolver %q from the pod's dnsConfig.nameservers is not an IP address: %w", pod.Namespace, pod.Name, s, err)
		}
		a = a.Unmap()
		ok := allowed[a] && a.Zone() == ""
		for _, p := range prefixes {
			if a.Zone() == "" && p.Contains(a) {
				ok = true
			}
		}
		if !ok {
			return fmt.Errorf("%w: pod %s/%s lists nameserver %s in spec.dnsConfig.nameservers, which is neither a cluster DNS IP, a node resolver, nor inside allowedPodNameservers; DNS to it would bypass the proxy (direct TCP+UDP port 53), so the pod gets no network (fail closed): add it to allowedPodNameservers in the authbridge node agent config, or remove it from the pod's spec.dnsConfig.nameservers",
				ErrPodNameserverNotAllowed, pod.Namespace, pod.Name, s)
		}
	}
	return nil
}
