package cni_test

import (
	"context"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// TestIPv6DisabledPodStillGetsIPv6Rules: a pod whose netns has IPv6
// switched off at ADD still gets the IPv6 rules (the kernel has IPv6, so it
// can be switched on later, and rules decided at ADD could not follow);
// CHECK verifies both families. After IPv6 is switched back on, UDP over
// it is dropped like any other.
func TestIPv6DisabledPodStillGetsIPv6Rules(t *testing.T) {
	e := newEnv(t, envOpts{})
	l := e.conflist("abnet", []redirect.Family{redirect.IPv4}, e.abConf(map[string]any{"backends": []string{redirect.BackendNFTables}}))
	nsName := uniqueNS("nov6")
	p := e.newPod(nsName, "agent", createPod(t, nsName, "agent", nil, true, nil))
	setIPv6 := func(v string) {
		t.Helper()
		err := p.netns.Do(func(ns.NetNS) error {
			for _, k := range []string{"all", "default", "lo", "eth0"} {
				// eth0 exists only after ADD; it inherits "default" then.
				if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/disable_ipv6", []byte(v), 0o644); err != nil && !(k == "eth0" && errors.Is(err, fs.ErrNotExist)) {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	setIPv6("1")
	if err := e.add(l, p); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	t.Cleanup(func() { _ = e.del(l, p) })
	if !hasRules(t, p, redirect.BackendNFTables, redirect.IPv4) || !hasRules(t, p, redirect.BackendNFTables, redirect.IPv6) {
		t.Fatalf("IPv6-disabled pod: want IPv4 and IPv6 rules:\n%s", output(t, p.netns, "nft", "list", "tables"))
	}
	if err := e.check(l, p); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	setIPv6("0")
	// The link-local address comes back after duplicate address detection;
	// until then the send fails for want of a source address. Once it can
	// be sent, it must be the DROP that stops it (EPERM), never an answer.
	ll := netip.AddrPortFrom(e.bridgeLinkLocal().WithZone("eth0"), otherUDPPort)
	var last error
	for i := 0; i < 20; i++ {
		got, err := p.topo.SendUDP(appUID, ll)
		if err == nil {
			t.Fatalf("after IPv6 was switched on: UDP to %s passed (%q); want dropped", ll, got)
		}
		if last = err; strings.Contains(err.Error(), "operation not permitted") {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("after IPv6 was switched on: UDP to %s: %v; want EPERM from the netfilter DROP", ll, last)
}

// TestPodNameservers: a nameserver the pod names itself gets direct DNS only
// when the admin allowed it; otherwise the ADD fails closed, naming the
// nameserver, the pod field and the fix.
func TestPodNameservers(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	e := newEnv(t, envOpts{})
	e.serveOutside()
	foreign := func(p *corev1.Pod) {
		p.Spec.DNSPolicy = corev1.DNSNone
		p.Spec.DNSConfig = &corev1.PodDNSConfig{Nameservers: []string{"192.0.2.53"}}
	}
	nsName := uniqueNS("podns")

	strict := e.conflist("abnet", fams, e.abConf(map[string]any{"backends": []string{redirect.BackendNFTables}}))
	uid := createPod(t, nsName, "foreign", nil, true, foreign)
	p := e.newPod(nsName, "foreign", uid)
	err := e.add(strict, p)
	t.Cleanup(func() { _ = e.del(strict, p) })
	for _, want := range []string{"nameserver 192.0.2.53", "spec.dnsConfig.nameservers", "add it to allowedPodNameservers in the authbridge node agent config, or remove it"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("ADD with a foreign pod nameserver = %v; want a refusal mentioning %q", err, want)
		}
	}
	noRules(t, p)

	// Allowed by the admin: the pod starts and DNS/UDP to it is not dropped
	// (nobody answers on 192.0.2.53, so the send succeeding is what counts;
	// the same send to a non-resolver is EPERM).
	allowed := e.conflist("abnet", fams, e.abConf(map[string]any{"backends": []string{redirect.BackendNFTables}, "allowedPodNameservers": []string{"192.0.2.0/24"}}))
	p2 := e.newPod(nsName, "foreign", uid)
	if err := e.add(allowed, p2); err != nil {
		t.Fatalf("ADD with an allowed pod nameserver: %v", err)
	}
	t.Cleanup(func() { _ = e.del(allowed, p2) })
	if !strings.Contains(output(t, p2.netns, "nft", "list", "ruleset"), "192.0.2.53") {
		t.Fatalf("the allowed pod nameserver is not in the rules:\n%s", output(t, p2.netns, "nft", "list", "ruleset"))
	}
}

// TestDelGCTolerateConfigSkew: a conflist entry this binary would refuse
// (a key from a newer agent, a value an older agent allowed) must not block
// DEL or GC, or pods would stay Terminating; the real binary logs a WARN and
// tears down. Malformed JSON is still an error (see TestBadInputs).
func TestDelGCTolerateConfigSkew(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	e := newEnv(t, envOpts{})
	l := e.conflist("abnet", fams, e.abConf(map[string]any{"backends": []string{redirect.BackendNFTables}}))
	skewed := e.conflist("abnet", fams, e.abConf(map[string]any{"backends": []string{redirect.BackendNFTables},
		"futureKey": map[string]any{"x": 1}, "excludeOutboundCIDRs": []string{"0.0.0.0/0"}}))
	nsName := uniqueNS("skew")
	uid := createPod(t, nsName, "agent", nil, true, nil)
	p := e.newPod(nsName, "agent", uid)
	if err := e.add(l, p); err != nil {
		t.Fatalf("ADD: %v", err)
	}
	// ADD and CHECK stay strict.
	if err := e.check(skewed, p); err == nil || !strings.Contains(err.Error(), `unknown field "futureKey"`) {
		t.Fatalf("CHECK with a skewed entry = %v; want the strict refusal", err)
	}
	if err := e.del(skewed, p); err != nil {
		t.Fatalf("DEL with a skewed entry: %v", err)
	}
	noRules(t, p)
	if _, err := os.Stat(e.containerStatePath(p)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("container state after DEL: %v", err)
	}
	warned := false
	for _, ln := range e.logLines() {
		if ln["level"] == "WARN" && ln["op"] == "DEL" && strings.Contains(ln["err"].(string), "futureKey") {
			warned = true
		}
	}
	if !warned {
		t.Fatalf("no WARN line naming futureKey for the DEL in %s", e.logFile)
	}

	// GC with the skewed entry still removes stale records.
	p2 := e.newPod(nsName, "agent", uid)
	other := libcni.NewCNIConfigWithCacheDir([]string{pluginDir(t)}, t.TempDir(), nil)
	if _, err := e.inHost(func() (any, error) { return other.AddNetworkList(context.Background(), l, p2.rt) }); err != nil {
		t.Fatal(err)
	}
	_, err := e.inHost(func() (any, error) {
		return nil, e.cni.GCNetworkList(context.Background(), skewed, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{}})
	})
	if err != nil {
		t.Fatalf("GC with a skewed entry: %v", err)
	}
	if _, err := os.Stat(e.containerStatePath(p2)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("GC with a skewed entry kept a stale record: %v", err)
	}
}

// bridgeLinkLocal returns the fe80:: address of the host netns' bridge, the
// link-local peer a v4-only pod can reach without any IPAM address.
func (e *env) bridgeLinkLocal() netip.Addr {
	e.t.Helper()
	var out netip.Addr
	deadline := time.Now().Add(5 * time.Second)
	for !out.IsValid() && time.Now().Before(deadline) {
		err := e.host.Do(func(ns.NetNS) error {
			l, err := netlink.LinkByName("abbr0")
			if err != nil {
				return err
			}
			addrs, err := netlink.AddrList(l, netlink.FAMILY_V6)
			if err != nil {
				return err
			}
			for _, a := range addrs {
				if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.IsLinkLocalUnicast() {
					out = ip
				}
			}
			return nil
		})
		if err != nil {
			e.t.Fatal(err)
		}
		if !out.IsValid() {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !out.IsValid() {
		e.t.Fatal("the bridge abbr0 has no link-local IPv6 address")
	}
	return out
}
