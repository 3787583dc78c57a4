package cni_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/testutils"
	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func gwOf(f redirect.Family) netip.Addr {
	if f == redirect.IPv6 {
		return gwV6
	}
	return gwV4
}

// flush removes the backend's rules behind the plugin's back, like an
// operator or another tool would.
func flush(t *testing.T, p *pod, backend string, fams []redirect.Family) {
	t.Helper()
	switch backend {
	case redirect.BackendNFTables:
		for _, f := range fams {
			table := "ip"
			if f == redirect.IPv6 {
				table = "ip6"
			}
			output(t, p.netns, "nft", "delete", "table", table, redirect.NFTTableName)
		}
	default:
		variant := strings.TrimPrefix(backend, "iptables-")
		for _, f := range fams {
			bin := "iptables-" + variant
			if f == redirect.IPv6 {
				bin = "ip6tables-" + variant
			}
			output(t, p.netns, bin, "-w", "-t", "nat", "-F")
		}
	}
}

// TestChainPerBackend drives [bridge+host-local, authbridge-cni] through
// libcni into a real netns for each backend and family, then checks real
// traffic, CHECK, flush detection and DEL.
func TestChainPerBackend(t *testing.T) {
	famCases := []struct {
		name string
		fams []redirect.Family
	}{
		{"ipv4", []redirect.Family{redirect.IPv4}},
		{"ipv6", []redirect.Family{redirect.IPv6}},
		{"dual", []redirect.Family{redirect.IPv4, redirect.IPv6}},
	}
	for _, backend := range redirect.AllBackends {
		for _, fc := range famCases {
			t.Run(backend+"/"+fc.name, func(t *testing.T) {
				e := newEnv(t, envOpts{})
				e.serveOutside()
				l := e.conflist("abnet", fc.fams, e.abConf(map[string]any{"backends": []string{backend}}))
				nsName := uniqueNS("chain")
				uid := createPod(t, nsName, "agent", nil, true, nil)
				p := e.newPod(nsName, "agent", uid)
				p.topo.ServeRedirect(t, redirect.DefaultOutboundPort)

				res, err := e.inHost(func() (any, error) { return e.cni.AddNetworkList(context.Background(), l, p.rt) })
				if err != nil {
					t.Fatalf("ADD: %v", err)
				}
				// prevResult passed through: the bridge's addresses, one per family.
				r, err := current.NewResultFromResult(res.(types.Result))
				if err != nil {
					t.Fatal(err)
				}
				if len(r.IPs) != len(fc.fams) {
					t.Fatalf("result IPs %v, want one per family %v", r.IPs, fc.fams)
				}
				// The record the node agent matches running pods against.
				var rec struct {
					PodUID  string `json:"podUID"`
					Backend string `json:"backend"`
					Mode    string `json:"mode"`
				}
				if b, err := os.ReadFile(e.containerStatePath(p)); err != nil {
					t.Fatalf("container state: %v", err)
				} else if err := json.Unmarshal(b, &rec); err != nil {
					t.Fatalf("container state: %v", err)
				}
				if rec.PodUID != uid || rec.Backend != backend || rec.Mode != "enforce-redirect" {
					t.Fatalf("container state %+v: want podUID %s, backend %s, enforce-redirect", rec, uid, backend)
				}

				for _, f := range fc.fams {
					gw := gwOf(f)
					dst := netip.AddrPortFrom(gw, peerTCPPort)
					// The app's connection arrives at the proxy listener with
					// its original destination.
					got, err := p.topo.Dial(appUID, dst)
					if err != nil || got != "redirected "+dst.String() {
						t.Fatalf("%s app TCP to %s: %q, %v; want redirected", f, dst, got, err)
					}
					// The proxy's own connection goes direct.
					got, err = p.topo.Dial(proxyUID, dst)
					if err != nil || got != "direct "+dst.String() {
						t.Fatalf("%s proxy-UID TCP to %s: %q, %v; want direct", f, dst, got, err)
					}
					// DNS to the resolver passes, over UDP and TCP.
					dns := netip.AddrPortFrom(gw, resolverPort)
					if got, err := p.topo.SendUDP(appUID, dns); err != nil || got != "udp 53" {
						t.Fatalf("%s DNS/UDP to resolver %s: %q, %v; want an answer", f, dns, got, err)
					}
					if got, err := p.topo.Dial(appUID, dns); err != nil || got != "direct "+dns.String() {
						t.Fatalf("%s DNS/TCP to resolver %s: %q, %v; want direct", f, dns, got, err)
					}
					// Any other UDP is dropped by the netfilter DROP, which
					// the sender sees as EPERM (a timeout would be something else).
					other := netip.AddrPortFrom(gw, otherUDPPort)
					if got, err := p.topo.SendUDP(appUID, other); err == nil {
						t.Fatalf("%s UDP to %s passed (%q); want dropped", f, other, got)
					} else if !strings.Contains(err.Error(), "operation not permitted") {
						t.Fatalf("%s UDP to %s: %v; want EPERM from the netfilter DROP", f, other, err)
					}
				}

				if fc.name == "ipv4" {
					// The v4-only pod's link-local IPv6 is enforced too: UDP
					// from it to the node's fe80:: address is dropped.
					ll := netip.AddrPortFrom(e.bridgeLinkLocal().WithZone("eth0"), otherUDPPort)
					if got, err := p.topo.SendUDP(appUID, ll); err == nil {
						t.Fatalf("v4-only pod: UDP to %s passed (%q); want dropped", ll, got)
					} else if !strings.Contains(err.Error(), "operation not permitted") {
						t.Fatalf("v4-only pod: UDP to %s: %v; want EPERM from the netfilter DROP", ll, err)
					}
				}

				// Both families are programmed whatever prevResult's IPs:
				// IPv6 is enabled in the pod's netns, so even a v4-only pod
				// can send from its fe80:: link-local address.
				for _, f := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
					if !hasRules(t, p, backend, f) {
						t.Fatalf("%s pod: no %s rules of %s in its netns after ADD", fc.name, f, backend)
					}
				}

				// State, log line and event of the ADD.
				if _, err := os.Stat(e.containerStatePath(p)); err != nil {
					t.Fatalf("container state after ADD: %v", err)
				}
				ev := e.events.waitFor(t, map[string]any{"op": "ADD", "result": "success", "backend": backend, "mode": "enforce-redirect"})
				if s, _ := ev["seconds"].(float64); s <= 0 || ev["pod"] != "agent" || ev["namespace"] != nsName {
					t.Fatalf("ADD event incomplete: %v", ev)
				}
				found := false
				for _, ln := range e.logLines() {
					if ln["op"] == "ADD" && ln["pod"] == nsName+"/agent" && ln["backend"] == backend && ln["duration"] != nil {
						found = true
					}
				}
				if !found {
					t.Fatalf("no ADD log line naming pod and backend in %s", e.logFile)
				}

				if err := e.check(l, p); err != nil {
					t.Fatalf("CHECK after ADD: %v", err)
				}
				// a successful CHECK leaves a line, as ADD does (CRI-O
				// calls it after every ADD; the e2e shows it there)
				found = false
				for _, ln := range e.logLines() {
					if ln["op"] == "CHECK" && ln["pod"] == nsName+"/agent" && ln["backend"] == backend && ln["level"] == "INFO" {
						found = true
					}
				}
				if !found {
					t.Fatalf("no CHECK log line naming pod and backend in %s", e.logFile)
				}
				// Flush the family the pod's addresses do NOT use (and both
				// for dual-stack): CHECK must notice either way.
				flushFams := map[string][]redirect.Family{"ipv4": {redirect.IPv6}, "ipv6": {redirect.IPv4}, "dual": fc.fams}[fc.name]
				flush(t, p, backend, flushFams)
				err = e.check(l, p)
				if err == nil || !strings.Contains(err.Error(), "no longer match") {
					t.Fatalf("CHECK after flush = %v; want failure", err)
				}

				// DEL never needs the API server: break the kubeconfig.
				kc, err := os.ReadFile(e.kubeconfig)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(e.kubeconfig, []byte("not a kubeconfig"), 0o600); err != nil {
					t.Fatal(err)
				}
				for i := 0; i < 2; i++ {
					if err := e.del(l, p); err != nil {
						t.Fatalf("DEL #%d: %v", i+1, err)
					}
				}
				if err := os.WriteFile(e.kubeconfig, kc, 0o600); err != nil {
					t.Fatal(err)
				}
				// The rules are gone with the DEL (the netns still exists).
				noRules(t, p)
				if _, err := os.Stat(e.containerStatePath(p)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("container state after DEL: %v", err)
				}

				// DEL when the netns is already gone.
				p2 := e.newPod(nsName, "agent", uid)
				if err := e.add(l, p2); err != nil {
					t.Fatalf("second ADD: %v", err)
				}
				p2.netns.Close()
				if err := testutils.UnmountNS(p2.netns); err != nil {
					t.Fatal(err)
				}
				if err := e.del(l, p2); err != nil {
					t.Fatalf("DEL with missing netns: %v", err)
				}
				if _, err := os.Stat(e.containerStatePath(p2)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("container state after DEL of a gone netns: %v", err)
				}
			})
		}
	}
}

// hasRules reports whether the backend's rules of family f are in the pod's
// netns, read back with the backend's own tool.
func hasRules(t *testing.T, p *pod, backend string, f redirect.Family) bool {
	t.Helper()
	if backend == redirect.BackendNFTables {
		table := "ip"
		if f == redirect.IPv6 {
			table = "ip6"
		}
		return strings.Contains(output(t, p.netns, "nft", "list", "tables"), "table "+table+" "+redirect.NFTTableName)
	}
	bin := "iptables-" + strings.TrimPrefix(backend, "iptables-") + "-save"
	if f == redirect.IPv6 {
		bin = "ip6" + strings.TrimPrefix(bin, "ip")
	}
	return strings.Contains(output(t, p.netns, bin), redirect.ChainRedirect)
}

// noRules asserts that nothing of ours is in the pod's netns.
func noRules(t *testing.T, p *pod) {
	t.Helper()
	if out := output(t, p.netns, "nft", "list", "ruleset"); strings.Contains(out, "authbridge") || strings.Contains(out, redirect.ChainRedirect) {
		t.Fatalf("unexpected rules in the pod netns:\n%s", out)
	}
	for _, bin := range []string{"iptables-legacy-save", "ip6tables-legacy-save"} {
		if out := output(t, p.netns, bin); strings.Contains(out, "AB_") {
			t.Fatalf("unexpected %s rules in the pod netns:\n%s", bin, out)
		}
	}
}

func TestModes(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	ack := map[string]any{"allowCooperative": true, "acknowledgeCooperativeRisks": config.SecurityModelVersion}
	ann := func(v string) map[string]string { return map[string]string{config.AnnotationEgressEnforcement: v} }
	e := newEnv(t, envOpts{})
	e.serveOutside()
	strict := e.conflist("abnet", fams, e.abConf(nil))
	coop := e.conflist("abnet", fams, e.abConf(ack))

	// A pod annotation may only strengthen its namespace's mode: pods that
	// say none or auto get a namespace whose ConfigMap allows it.
	run := func(t *testing.T, l *libcni.NetworkConfigList, annotations map[string]string, sidecar bool) (*pod, error) {
		nsName := uniqueNS("mode")
		uid := createPod(t, nsName, "agent", annotations, sidecar, nil)
		if m := annotations[config.AnnotationEgressEnforcement]; m == "none" || m == "auto" {
			createConfigMap(t, nsName, "egressEnforcement: "+m+"\n")
		}
		p := e.newPod(nsName, "agent", uid)
		err := e.add(l, p)
		t.Cleanup(func() { _ = e.del(l, p) })
		return p, err
	}
	direct := "direct " + netip.AddrPortFrom(gwV4, peerTCPPort).String()

	t.Run("none without allowCooperative fails", func(t *testing.T) {
		_, err := run(t, strict, ann("none"), true)
		if err == nil || !strings.Contains(err.Error(), "cooperative mode (no redirect rules) is not allowed") ||
			!strings.Contains(err.Error(), "acknowledgeCooperativeRisks: \""+config.SecurityModelVersion+"\"") {
			t.Fatalf("ADD = %v; want refusal naming allowCooperative", err)
		}
	})
	t.Run("none with allowCooperative is cooperative without rules", func(t *testing.T) {
		p, err := run(t, coop, ann("none"), true)
		if err != nil {
			t.Fatalf("ADD: %v", err)
		}
		noRules(t, p)
		if got, err := p.topo.Dial(appUID, netip.AddrPortFrom(gwV4, peerTCPPort)); err != nil || got != direct {
			t.Fatalf("cooperative pod TCP: %q, %v; want direct", got, err)
		}
		e.events.waitFor(t, map[string]any{"op": "ADD", "mode": "cooperative", "reason": "annotation", "pod": "agent"})
		if err := e.check(coop, p); err != nil {
			t.Fatalf("CHECK of a cooperative pod: %v", err)
		}
	})
	t.Run("annotation weaker than the namespace is refused", func(t *testing.T) {
		nsName := uniqueNS("weaker")
		uid := createPod(t, nsName, "agent", ann("none"), true, nil)
		p := e.newPod(nsName, "agent", uid)
		err := e.add(coop, p)
		t.Cleanup(func() { _ = e.del(coop, p) })
		if err == nil || !strings.Contains(err.Error(), `"none" is weaker than "enforce-redirect"`) || !strings.Contains(err.Error(), "ConfigMap "+nsName+"/authbridge-runtime-config") {
			t.Fatalf("ADD = %v; want refusal naming the annotation and the ConfigMap that would allow it", err)
		}
		noRules(t, p)
	})
	t.Run("sandboxed runtime handler", func(t *testing.T) {
		// A RuntimeClass named like nothing in vmRuntimeClasses whose
		// handler is gVisor's: enforce fails closed before any rule is
		// programmed, auto goes cooperative with reason sandboxed-runtime.
		if _, err := adminClient(t).NodeV1().RuntimeClasses().Create(context.Background(), &nodev1.RuntimeClass{ObjectMeta: metav1.ObjectMeta{Name: "sandboxed"}, Handler: "runsc"}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		withRC := func(p *corev1.Pod) { rc := "sandboxed"; p.Spec.RuntimeClassName = &rc }
		nsName := uniqueNS("gvisor")
		p := e.newPod(nsName, "agent", createPod(t, nsName, "agent", nil, true, withRC))
		err := e.add(coop, p)
		t.Cleanup(func() { _ = e.del(coop, p) })
		if err == nil || !strings.Contains(err.Error(), `runtime handler "runsc"`) || !strings.Contains(err.Error(), "netfilterRuntimeHandlers") {
			t.Fatalf("ADD = %v; want fail closed naming the handler and netfilterRuntimeHandlers", err)
		}
		noRules(t, p)
		nsName = uniqueNS("gvisor-auto")
		p2 := e.newPod(nsName, "agent", createPod(t, nsName, "agent", nil, true, withRC))
		createConfigMap(t, nsName, "egressEnforcement: auto\n")
		if err := e.add(coop, p2); err != nil {
			t.Fatalf("auto ADD: %v", err)
		}
		t.Cleanup(func() { _ = e.del(coop, p2) })
		noRules(t, p2)
		e.events.waitFor(t, map[string]any{"op": "ADD", "mode": "cooperative", "reason": "sandboxed-runtime"})
	})
	t.Run("unknown annotation value", func(t *testing.T) {
		_, err := run(t, coop, ann("disabled"), true)
		if err == nil || !strings.Contains(err.Error(), `"disabled"`) || !strings.Contains(err.Error(), `"enforce-redirect", "auto", "none"`) ||
			!strings.Contains(err.Error(), config.AnnotationEgressEnforcement) {
			t.Fatalf("ADD = %v; want error naming the value and the allowed ones", err)
		}
	})
	t.Run("pod without sidecar is untouched", func(t *testing.T) {
		p, err := run(t, strict, nil, false)
		if err != nil {
			t.Fatalf("ADD: %v", err)
		}
		noRules(t, p)
		e.events.waitFor(t, map[string]any{"op": "ADD", "mode": "skipped", "reason": "no-sidecar"})
	})
	t.Run("not a kubernetes pod passes through", func(t *testing.T) {
		p := e.newPod("", "", "")
		if err := e.add(strict, p); err != nil {
			t.Fatalf("ADD: %v", err)
		}
		t.Cleanup(func() { _ = e.del(strict, p) })
		noRules(t, p)
		if err := e.check(strict, p); err != nil {
			t.Fatalf("CHECK: %v", err)
		}
	})
	t.Run("namespace ConfigMap selects the mode", func(t *testing.T) {
		nsName := uniqueNS("nscm")
		uid := createPod(t, nsName, "agent", nil, true, nil)
		createConfigMap(t, nsName, "egressEnforcement: none\n")
		p := e.newPod(nsName, "agent", uid)
		err := e.add(strict, p)
		t.Cleanup(func() { _ = e.del(strict, p) })
		if err == nil || !strings.Contains(err.Error(), "ConfigMap "+nsName+"/authbridge-runtime-config") {
			t.Fatalf("ADD = %v; want refusal naming the namespace ConfigMap", err)
		}
	})
	t.Run("auto on a node without working backend", func(t *testing.T) {
		incapable := &nodestate.State{Results: []nodestate.BackendResult{
			{Backend: redirect.BackendNFTables, Error: "nf_tables: operation not supported"},
			{Backend: redirect.BackendIPTablesNFT, Error: "iptables-nft: not found"},
			{Backend: redirect.BackendIPTablesLegacy, Error: "legacy: not found"},
		}, ClusterDNS: []string{gwV4.String()}}
		e2 := newEnv(t, envOpts{state: incapable})
		nsName := uniqueNS("auto")
		uid := createPod(t, nsName, "agent", ann("auto"), true, nil)
		createConfigMap(t, nsName, "egressEnforcement: auto\n")
		p := e2.newPod(nsName, "agent", uid)
		err := e2.add(e2.conflist("abnet", fams, e2.abConf(nil)), p)
		if err == nil || !strings.Contains(err.Error(), "nf_tables: operation not supported") || !strings.Contains(err.Error(), "allowCooperative") {
			t.Fatalf("auto without allowCooperative = %v; want refusal naming the probe errors", err)
		}
		p2 := e2.newPod(nsName, "agent", uid)
		if err := e2.add(e2.conflist("abnet", fams, e2.abConf(ack)), p2); err != nil {
			t.Fatalf("auto with allowCooperative: %v", err)
		}
		noRules(t, p2)
		e2.events.waitFor(t, map[string]any{"op": "ADD", "mode": "cooperative", "reason": "auto-incapable-node"})
		// enforce-redirect on the same node fails closed, naming each backend.
		nsName = uniqueNS("enf")
		uid = createPod(t, nsName, "agent", nil, true, nil)
		p3 := e2.newPod(nsName, "agent", uid)
		err = e2.add(e2.conflist("abnet", fams, e2.abConf(ack)), p3)
		if err == nil || !strings.Contains(err.Error(), "no redirect backend works") || !strings.Contains(err.Error(), "iptables-legacy: legacy: not found") {
			t.Fatalf("enforce on an incapable node = %v; want fail closed", err)
		}
	})
	t.Run("missing node state fails closed", func(t *testing.T) {
		e2 := newEnv(t, envOpts{noState: true})
		nsName := uniqueNS("nostate")
		uid := createPod(t, nsName, "agent", nil, true, nil)
		p := e2.newPod(nsName, "agent", uid)
		err := e2.add(e2.conflist("abnet", fams, e2.abConf(nil)), p)
		if err == nil || !strings.Contains(err.Error(), "node agent has not probed this node") {
			t.Fatalf("ADD without node state = %v", err)
		}
	})
	t.Run("API server unreachable", func(t *testing.T) {
		e2 := newEnv(t, envOpts{deadAPI: true})
		nsName := uniqueNS("deadapi")
		uid := createPod(t, nsName, "agent", nil, true, nil)
		p := e2.newPod(nsName, "agent", uid)
		l := e2.conflist("abnet", fams, e2.abConf(ack))
		err := e2.add(l, p)
		if err == nil || !strings.Contains(err.Error(), "cannot reach the Kubernetes API server at https://127.0.0.1:") ||
			!strings.Contains(err.Error(), "to read pod "+nsName+"/agent") || !strings.Contains(err.Error(), "enforcement mode is unknown") {
			t.Fatalf("ADD with the API server down = %v", err)
		}
		noRules(t, p)
		// DEL never needs the API server.
		if err := e2.del(l, p); err != nil {
			t.Fatalf("DEL with the API server down: %v", err)
		}
	})
	t.Run("pod UID mismatch", func(t *testing.T) {
		nsName := uniqueNS("uid")
		createPod(t, nsName, "agent", nil, true, nil)
		p := e.newPod(nsName, "agent", "00000000-0000-0000-0000-000000000000")
		err := e.add(strict, p)
		t.Cleanup(func() { _ = e.del(strict, p) })
		if err == nil || !strings.Contains(err.Error(), "recreated") {
			t.Fatalf("ADD with a stale UID = %v", err)
		}
	})
}

func createConfigMap(t testing.TB, namespace, doc string) {
	t.Helper()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: config.NamespaceConfigMap}, Data: map[string]string{config.NamespaceConfigMapKey: doc}}
	_, err := adminClient(t).CoreV1().ConfigMaps(namespace).Create(context.Background(), cm, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// TestStatus runs libcni's STATUS (CNI 1.1.0) on the real chain: it fails
// only when the plugin itself cannot work, never because the agent has not
// probed or no backend works (a failing STATUS makes the node NotReady).
func TestStatus(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	status := func(e *env, ab map[string]any) error {
		_, err := e.inHost(func() (any, error) {
			return nil, e.cni.GetStatusNetworkList(context.Background(), e.conflist("abnet", fams, ab))
		})
		return err
	}
	e := newEnv(t, envOpts{})
	if err := status(e, e.abConf(nil)); err != nil {
		t.Fatalf("STATUS on this node: %v", err)
	}
	e = newEnv(t, envOpts{state: &nodestate.State{Results: []nodestate.BackendResult{
		{Backend: redirect.BackendNFTables, Error: "boom"},
		{Backend: redirect.BackendIPTablesNFT, Error: "boom"},
		{Backend: redirect.BackendIPTablesLegacy, Error: "boom"},
	}}})
	if err := status(e, e.abConf(nil)); err != nil {
		t.Fatalf("STATUS with no working backend = %v; want success (the capability labels and a fail-closed ADD handle it)", err)
	}
	e = newEnv(t, envOpts{noState: true})
	if err := status(e, e.abConf(nil)); err != nil {
		t.Fatalf("STATUS before the agent has probed = %v; want success", err)
	}
	// After a reboot the tmpfs state dir is gone altogether.
	if err := os.RemoveAll(e.stateDir); err != nil {
		t.Fatal(err)
	}
	if err := status(e, e.abConf(nil)); err != nil {
		t.Fatalf("STATUS with no state dir at all = %v; want success (it is created)", err)
	}

	var te *types.Error
	// A state dir that is a file: no container record can be written.
	e = newEnv(t, envOpts{noState: true})
	blocked := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	err := status(e, e.abConf(map[string]any{"stateDir": blocked}))
	if !errors.As(err, &te) || te.Code != types.ErrPluginNotAvailable || !strings.Contains(te.Msg, "is not a directory") {
		t.Fatalf("STATUS with a file as stateDir = %#v; want code 50 naming the state dir", err)
	}
	// An invalid config: the plugin cannot work for any pod.
	err = status(e, e.abConf(map[string]any{"proxyUID": 0}))
	if !errors.As(err, &te) || !strings.Contains(te.Msg, "proxyUID") {
		t.Fatalf("STATUS with an invalid config = %#v; want an error naming proxyUID", err)
	}
}

func TestGC(t *testing.T) {
	fams := []redirect.Family{redirect.IPv4}
	e := newEnv(t, envOpts{})
	l := e.conflist("abnet", fams, e.abConf(nil))
	nsName := uniqueNS("gc")
	uidA := createPod(t, nsName, "a", nil, true, nil)
	uidB := createPod(t, nsName, "b", nil, false, nil)
	a := e.newPod(nsName, "a", uidA)
	if err := e.add(l, a); err != nil {
		t.Fatal(err)
	}
	// b is ADDed through a runtime whose cache is separate, so libcni's own
	// GC does not DEL it: only the plugin's GC can clean its record.
	other := libcni.NewCNIConfigWithCacheDir([]string{pluginDir(t)}, t.TempDir(), nil)
	b := e.newPod(nsName, "b", uidB)
	if _, err := e.inHost(func() (any, error) { return other.AddNetworkList(context.Background(), l, b.rt) }); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*pod{a, b} {
		if _, err := os.Stat(e.containerStatePath(p)); err != nil {
			t.Fatal(err)
		}
	}
	unrelated := e.stateDir + "/containers/README"
	if err := os.WriteFile(unrelated, []byte("not a record"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The node agent's in-place repair record of b: the runtime does not
	// know its ID, so GC must keep it (the agent prunes it).
	repairB := containerstate.Record{ContainerID: containerstate.RepairID(uidB), Namespace: nsName, Pod: "b", PodUID: uidB, Mode: podmode.Cooperative}
	if err := containerstate.Write(e.stateDir, repairB); err != nil {
		t.Fatal(err)
	}
	_, err := e.inHost(func() (any, error) {
		return nil, e.cni.GCNetworkList(context.Background(), l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: a.rt.ContainerID, IfName: "eth0"}}})
	})
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	if _, err := os.Stat(e.containerStatePath(a)); err != nil {
		t.Fatalf("GC removed a valid attachment's record: %v", err)
	}
	if _, err := os.Stat(e.containerStatePath(b)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("GC kept a stale record: %v", err)
	}
	for _, keep := range []string{unrelated, e.stateDir + "/" + nodestate.FileName} {
		if _, err := os.Stat(keep); err != nil {
			t.Fatalf("GC touched %s: %v", keep, err)
		}
	}
	// a's rules are still in place.
	if err := e.check(l, a); err != nil {
		t.Fatalf("CHECK after GC: %v", err)
	}
	if r, err := containerstate.Read(e.stateDir, repairB.ContainerID); err != nil || r == nil {
		t.Fatalf("GC removed the agent's repair record: %v, %v", r, err)
	}
	// DEL of b's sandbox (CNI_ARGS carry its pod UID) ends the repair record.
	if _, err := e.inHost(func() (any, error) { return nil, other.DelNetworkList(context.Background(), l, b.rt) }); err != nil {
		t.Fatalf("DEL b: %v", err)
	}
	if r, err := containerstate.Read(e.stateDir, repairB.ContainerID); err != nil || r != nil {
		t.Fatalf("repair record after the pod's DEL: %v, %v; want removed", r, err)
	}
}

// TestParallelAdds runs 50 ADDs at once (each its own netns, the three
// backends mixed), then verifies every pod: CHECK and a redirected connection.
func TestParallelAdds(t *testing.T) {
	const n = 50
	fams := []redirect.Family{redirect.IPv4}
	e := newEnv(t, envOpts{})
	e.serveOutside()
	lists := map[string]*libcni.NetworkConfigList{}
	for _, b := range redirect.AllBackends {
		lists[b] = e.conflist("abnet", fams, e.abConf(map[string]any{"backends": []string{b}}))
	}
	nsName := uniqueNS("par")
	pods := make([]*pod, n)
	for i := range pods {
		name := fmt.Sprintf("p%d", i)
		pods[i] = e.newPod(nsName, name, createPod(t, nsName, name, nil, true, nil))
	}
	backendOf := func(i int) string { return redirect.AllBackends[i%len(redirect.AllBackends)] }
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := time.Now()
	for i := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.add(lists[backendOf(i)], pods[i])
		}()
	}
	wg.Wait()
	t.Logf("%d parallel ADDs (bridge+host-local+authbridge-cni, backends mixed) took %s wall time", n, time.Since(start))
	for i, err := range errs {
		if err != nil {
			t.Errorf("ADD %d (%s): %v", i, backendOf(i), err)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for i, p := range pods {
		if err := e.check(lists[backendOf(i)], p); err != nil {
			t.Errorf("CHECK %d (%s): %v", i, backendOf(i), err)
		}
	}
	dst := netip.AddrPortFrom(gwV4, peerTCPPort)
	sem := make(chan struct{}, 4)
	for i, p := range pods {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			p.topo.ServeRedirect(t, redirect.DefaultOutboundPort)
			got, err := p.topo.Dial(appUID, dst)
			if err != nil || got != "redirected "+dst.String() {
				t.Errorf("pod %d (%s): %q, %v; want redirected", i, backendOf(i), got, err)
			}
		}()
	}
	wg.Wait()
	for _, ln := range e.logLines() {
		if s, _ := ln["err"].(string); strings.Contains(strings.ToLower(s), "lock") {
			t.Errorf("lock error in the plugin log: %s", s)
		}
	}
	for i, p := range pods {
		if err := e.del(lists[backendOf(i)], p); err != nil {
			t.Errorf("DEL %d: %v", i, err)
		}
	}
}

// BenchmarkAdd measures ADD+DEL of the whole chain through libcni per
// backend (fresh netns per iteration, created outside the timer).
func BenchmarkAdd(b *testing.B) {
	for _, backend := range redirect.AllBackends {
		b.Run(backend, func(b *testing.B) {
			benchChain(b, backend)
		})
	}
}

func benchChain(b *testing.B, backend string) {
	e := newEnv(b, envOpts{})
	l := e.conflist("abnet", []redirect.Family{redirect.IPv4}, e.abConf(map[string]any{"backends": []string{backend}}))
	nsName := uniqueNS("bench")
	uid := createPod(b, nsName, "agent", nil, true, nil)
	var durs []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		p := e.newPod(nsName, "agent", uid)
		b.StartTimer()
		start := time.Now()
		if err := e.add(l, p); err != nil {
			b.Fatalf("ADD: %v", err)
		}
		if err := e.del(l, p); err != nil {
			b.Fatalf("DEL: %v", err)
		}
		durs = append(durs, time.Since(start))
		b.StopTimer()
		p.netns.Close()
		_ = testutils.UnmountNS(p.netns)
		b.StartTimer()
	}
	b.StopTimer()
	sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
	pct := func(q float64) float64 { return float64(durs[int(q*float64(len(durs)-1))].Microseconds()) / 1000 }
	b.ReportMetric(pct(0.5), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	// The plugin's own ADD time (from its events: API reads, decision, netns
	// entry, apply+verify, state write), without the other plugins.
	time.Sleep(100 * time.Millisecond) // let the last datagrams arrive
	e.events.mu.Lock()
	var own []float64
	for _, ev := range e.events.evs {
		if ev["op"] == "ADD" && ev["backend"] == backend {
			own = append(own, ev["seconds"].(float64)*1000)
		}
	}
	e.events.mu.Unlock()
	if len(own) > 0 {
		sort.Float64s(own)
		b.ReportMetric(own[len(own)/2], "plugin-add-p50-ms")
		b.ReportMetric(own[int(0.99*float64(len(own)-1))], "plugin-add-p99-ms")
	}
}
