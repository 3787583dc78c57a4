package cni_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/kagenti/authbridge-node/pkg/pluginconf"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// attachment is the plugin as Multus runs a NetworkAttachmentDefinition's
// delegate: a single-plugin config (the NAD's spec.config: CNI keys and
// entryFile only) run by libcni's AddNetwork on interface net1, with no
// prevResult, after the cluster network set up eth0. Multus v4.1.0 does
// exactly this (pkg/multus confAdd → libcni AddNetwork with the NAD's
// bytes); TestMultusDelegate runs the real Multus binary.
func (e *env) attachment(cniVersion string, entry map[string]any, extra map[string]any) *libcni.NetworkConfig {
	e.t.Helper()
	file := filepath.Join(filepath.Dir(e.stateDir), pluginconf.EntryFileName)
	if entry != nil {
		b, err := json.Marshal(entry)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := os.WriteFile(file, b, 0o600); err != nil {
			e.t.Fatal(err)
		}
	}
	nad := map[string]any{"cniVersion": cniVersion, "name": pluginconf.AttachmentName, "type": pluginconf.PluginType, pluginconf.EntryFileKey: file}
	for k, v := range extra {
		nad[k] = v
	}
	b, err := json.Marshal(nad)
	if err != nil {
		e.t.Fatal(err)
	}
	c, err := libcni.ConfFromBytes(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) addAttachment(c *libcni.NetworkConfig, p *pod) (types.Result, error) {
	rt := *p.rt
	rt.IfName = "net1"
	r, err := e.inHost(func() (any, error) { return e.cni.AddNetwork(context.Background(), c, &rt) })
	if err != nil {
		return nil, err
	}
	return r.(types.Result), nil
}

func (e *env) checkAttachment(c *libcni.NetworkConfig, p *pod) error {
	rt := *p.rt
	rt.IfName = "net1"
	_, err := e.inHost(func() (any, error) { return nil, e.cni.CheckNetwork(context.Background(), c, &rt) })
	return err
}

func (e *env) delAttachment(c *libcni.NetworkConfig, p *pod) error {
	rt := *p.rt
	rt.IfName = "net1"
	_, err := e.inHost(func() (any, error) { return nil, e.cni.DelNetwork(context.Background(), c, &rt) })
	return err
}

// TestAttachment: the plugin as a Multus attachment, for each CNI version
// a NAD may name and each family set of the cluster network: no
// prevResult, families from the netns, an empty result, the same rules and
// traffic as chained, CHECK catching a flush, DEL idempotent.
func TestAttachment(t *testing.T) {
	backend := firstWorking(t)
	for _, tc := range []struct {
		version string
		fams    []redirect.Family
	}{
		{"1.0.0", []redirect.Family{redirect.IPv4}},
		{"0.4.0", []redirect.Family{redirect.IPv6}},
		{"1.1.0", []redirect.Family{redirect.IPv4, redirect.IPv6}},
	} {
		t.Run(tc.version+"/"+fmt.Sprint(tc.fams), func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.serveOutside()
			cluster := e.conflist("cluster", tc.fams, nil)
			nad := e.attachment(tc.version, e.abConf(map[string]any{"backends": []string{backend}}), nil)
			nsName := uniqueNS("attach")
			uid := createPod(t, nsName, "agent", nil, true, nil)
			p := e.newPod(nsName, "agent", uid)
			p.topo.ServeRedirect(t, redirect.DefaultOutboundPort)
			if err := e.add(cluster, p); err != nil {
				t.Fatalf("cluster network ADD: %v", err)
			}
			res, err := e.addAttachment(nad, p)
			if err != nil {
				t.Fatalf("attachment ADD: %v", err)
			}
			if res.Version() != tc.version {
				t.Fatalf("result version %s, want the NAD's %s", res.Version(), tc.version)
			}
			r, err := current.NewResultFromResult(res)
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Interfaces) != 0 || len(r.IPs) != 0 {
				t.Fatalf("attachment result %+v: want empty (no interface, no address of ours)", r)
			}
			for _, f := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
				if !hasRules(t, p, backend, f) {
					t.Fatalf("no %s rules of %s after the attachment's ADD", f, backend)
				}
			}
			for _, f := range tc.fams {
				dst := netip.AddrPortFrom(gwOf(f), peerTCPPort)
				if got, err := p.topo.Dial(appUID, dst); err != nil || got != "redirected "+dst.String() {
					t.Fatalf("%s app TCP to %s: %q, %v; want redirected", f, dst, got, err)
				}
				if got, err := p.topo.Dial(proxyUID, dst); err != nil || got != "direct "+dst.String() {
					t.Fatalf("%s proxy-UID TCP to %s: %q, %v; want direct", f, dst, got, err)
				}
				dns := netip.AddrPortFrom(gwOf(f), resolverPort)
				if got, err := p.topo.SendUDP(appUID, dns); err != nil || got != "udp 53" {
					t.Fatalf("%s DNS to %s: %q, %v; want an answer", f, dns, got, err)
				}
				other := netip.AddrPortFrom(gwOf(f), otherUDPPort)
				if got, err := p.topo.SendUDP(appUID, other); err == nil {
					t.Fatalf("%s UDP to %s passed (%q); want dropped", f, other, got)
				}
			}
			e.events.waitFor(t, map[string]any{"op": "ADD", "result": "success", "backend": backend, "mode": "enforce-redirect"})

			if err := e.checkAttachment(nad, p); err != nil {
				t.Fatalf("CHECK after ADD: %v", err)
			}
			flush(t, p, backend, tc.fams)
			if err := e.checkAttachment(nad, p); err == nil || !strings.Contains(err.Error(), "no longer match") {
				t.Fatalf("CHECK after flush = %v; want failure", err)
			}
			for i := 0; i < 2; i++ {
				if err := e.delAttachment(nad, p); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
			}
			noRules(t, p)
			if _, err := os.Stat(e.containerStatePath(p)); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("container state after DEL: %v", err)
			}
			if err := e.del(cluster, p); err != nil {
				t.Fatalf("cluster network DEL: %v", err)
			}
		})
	}
}

// TestAttachmentFailsClosed: as an attachment, ADD fails with the cause and
// leaves no rules and no record when the pod has no network yet, when the
// agent's entry file is missing, or when the NAD's config carries a key of
// the entry; DEL still succeeds without the entry file (a pod must never
// be stuck Terminating).
func TestAttachmentFailsClosed(t *testing.T) {
	backend := firstWorking(t)
	e := newEnv(t, envOpts{})
	entry := e.abConf(map[string]any{"backends": []string{backend}})
	nsName := uniqueNS("attachfail")
	uid := createPod(t, nsName, "agent", nil, true, nil)

	t.Run("no pod address", func(t *testing.T) {
		p := e.newPod(nsName, "agent", uid) // lo only: the cluster network did not run
		_, err := e.addAttachment(e.attachment("1.0.0", entry, nil), p)
		if err == nil || !strings.Contains(err.Error(), "no global IP address") {
			t.Fatalf("ADD = %v; want the missing pod address named", err)
		}
		noRules(t, p)
		if _, err := os.Stat(e.containerStatePath(p)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("container state after a failed ADD: %v", err)
		}
	})
	t.Run("NAD config carries a key of the entry", func(t *testing.T) {
		p := e.newPod(nsName, "agent", uid)
		_, err := e.addAttachment(e.attachment("1.0.0", entry, map[string]any{"stateDir": "/run/elsewhere"}), p)
		if err == nil || !strings.Contains(err.Error(), "field stateDir: set both next to entryFile") {
			t.Fatalf("ADD = %v; want the duplicated key named", err)
		}
	})
	t.Run("entry file missing", func(t *testing.T) {
		p := e.newPod(nsName, "agent", uid)
		if err := e.add(e.conflist("cluster", []redirect.Family{redirect.IPv4}, nil), p); err != nil {
			t.Fatalf("cluster network ADD: %v", err)
		}
		nad := e.attachment("1.0.0", nil, nil)
		if err := os.Remove(filepath.Join(filepath.Dir(e.stateDir), pluginconf.EntryFileName)); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		_, err := e.addAttachment(nad, p)
		if err == nil || !strings.Contains(err.Error(), "field entryFile") || !strings.Contains(err.Error(), "cniInstallMode multus-attachment") {
			t.Fatalf("ADD = %v; want the entry file and how it is written named", err)
		}
		noRules(t, p)
		if err := e.delAttachment(nad, p); err != nil {
			t.Fatalf("DEL without the entry file: %v", err)
		}
	})
}
