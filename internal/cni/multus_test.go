package cni_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/internal/testing/tools"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

var (
	crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	nadGVR = schema.GroupVersionResource{Group: "k8s.cni.cncf.io", Version: "v1", Resource: "network-attachment-definitions"}
)

// installNADCRD creates the NetworkAttachmentDefinition CRD the e2e
// installs (test/e2e/multus/nad-crd.yaml) in the shared API server, once,
// and waits until NADs can be created.
func installNADCRD(t *testing.T, dyn dynamic.Interface) {
	t.Helper()
	root, err := apiserver.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(root, "test/e2e/multus/nad-crd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	if err := yaml.Unmarshal(raw, &obj); err != nil {
		t.Fatal(err)
	}
	_, err = dyn.Resource(crdGVR).Create(context.Background(), &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("create the NAD CRD: %v", err)
	}
}

func createNAD(t *testing.T, dyn dynamic.Interface, namespace, name, config string) {
	t.Helper()
	nad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
		"metadata": map[string]any{"name": name, "namespace": namespace},
		"spec":     map[string]any{"config": config},
	}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := dyn.Resource(nadGVR).Namespace(namespace).Create(context.Background(), nad, metav1.CreateOptions{})
		if err == nil || strings.Contains(err.Error(), "already exists") {
			return
		}
		if time.Now().After(deadline) { // the CRD is served shortly after it is created
			t.Fatalf("create NAD %s/%s: %v", namespace, name, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMultusDelegate runs the real Multus v4.1.0 thin plugin (built from
// the module proxy by hack/build-tools.sh) as the pod's network, the way
// a runtime runs 00-multus.conf: Multus reads the pod and the
// NetworkAttachmentDefinition from the real API server, runs the cluster
// network (bridge + host-local) as eth0 and our plugin as the attachment
// the pod requests, with the NAD's config (entryFile) and no prevResult.
// Checked: the pod's rules and traffic; Multus' result is the cluster
// network's; Multus' CHECK does not reach the attachment (v4.1.0's
// CmdCheck walks only its config's delegates: the reason the agent's
// verify pass matters); DEL through Multus removes our rules and record;
// an attachment that fails (no entry file) fails Multus' ADD and leaves no
// interface behind.
func TestMultusDelegate(t *testing.T) {
	multus := tools.For(t, "multus")
	backend := firstWorking(t)
	e := newEnv(t, envOpts{})
	e.serveOutside()
	dyn, err := dynamic.NewForConfig(apiserver.Shared(t).AdminConfig())
	if err != nil {
		t.Fatal(err)
	}
	installNADCRD(t, dyn)
	bin := pluginDir(t)
	if err := os.Symlink(multus, filepath.Join(bin, "multus")); err != nil && !os.IsExist(err) {
		t.Fatal(err)
	}

	dir := t.TempDir()
	cluster := filepath.Join(dir, "10-cluster.conflist")
	if err := os.WriteFile(cluster, e.conflist("cluster", []redirect.Family{redirect.IPv4}, nil).Bytes, 0o644); err != nil {
		t.Fatal(err)
	}
	entry := e.abConf(map[string]any{"backends": []string{backend}})
	entryFile := filepath.Join(dir, pluginconf.EntryFileName)
	b, _ := json.Marshal(entry)
	if err := os.WriteFile(entryFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	nadConf := `{"cniVersion":"1.0.0","name":"authbridge-cni","type":"authbridge-cni","entryFile":"` + entryFile + `"}`
	createNAD(t, dyn, "default", pluginconf.AttachmentName, nadConf)
	missing := `{"cniVersion":"1.0.0","name":"authbridge-cni-broken","type":"authbridge-cni","entryFile":"` + filepath.Join(dir, "absent.json") + `"}`
	createNAD(t, dyn, "default", "authbridge-cni-broken", missing)

	multusConf, err := libcni.ConfFromBytes([]byte(`{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus",` +
		`"kubeconfig":"` + e.kubeconfig + `","clusterNetwork":"` + cluster + `","binDir":"` + bin + `",` +
		`"cniDir":"` + filepath.Join(dir, "multus-cache") + `","namespaceIsolation":true,"globalNamespaces":"default",` +
		`"logFile":"` + filepath.Join(dir, "multus.log") + `","logLevel":"verbose","logToStderr":false}`))
	if err != nil {
		t.Fatal(err)
	}
	run := func(op string, p *pod) (types.Result, error) {
		r, err := e.inHost(func() (any, error) {
			switch op {
			case "ADD":
				return e.cni.AddNetwork(context.Background(), multusConf, p.rt)
			case "CHECK":
				return nil, e.cni.CheckNetwork(context.Background(), multusConf, p.rt)
			default:
				return nil, e.cni.DelNetwork(context.Background(), multusConf, p.rt)
			}
		})
		if r == nil {
			return nil, err
		}
		return r.(types.Result), err
	}
	nsName := uniqueNS("multus")
	uid := createPod(t, nsName, "agent", map[string]string{pluginconf.AttachmentAnnotation: "default/authbridge-cni"}, true, nil)
	p := e.newPod(nsName, "agent", uid)
	p.topo.ServeRedirect(t, redirect.DefaultOutboundPort)

	res, err := run("ADD", p)
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "multus.log"))
		t.Fatalf("Multus ADD: %v\nmultus.log:\n%s", err, log)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IPs) != 1 || !subnetV4.Contains(netip.MustParseAddr(r.IPs[0].Address.IP.String())) {
		t.Fatalf("Multus' result %+v: want the cluster network's one address", r)
	}
	var rec struct {
		IfName, PodUID, Backend string
	}
	if b, err := os.ReadFile(e.containerStatePath(p)); err != nil {
		t.Fatalf("no record of our ADD under Multus: %v", err)
	} else if err := json.Unmarshal(b, &rec); err != nil || rec.IfName != "net1" || rec.PodUID != uid || rec.Backend != backend {
		t.Fatalf("record %+v (%v): want net1, pod %s, %s", rec, err, uid, backend)
	}
	for _, f := range []redirect.Family{redirect.IPv4, redirect.IPv6} {
		if !hasRules(t, p, backend, f) {
			t.Fatalf("no %s rules after Multus' ADD", f)
		}
	}
	dst := netip.AddrPortFrom(gwV4, peerTCPPort)
	if got, err := p.topo.Dial(appUID, dst); err != nil || got != "redirected "+dst.String() {
		t.Fatalf("app TCP to %s: %q, %v; want redirected", dst, got, err)
	}
	if got, err := p.topo.Dial(proxyUID, dst); err != nil || got != "direct "+dst.String() {
		t.Fatalf("proxy TCP to %s: %q, %v; want direct", dst, got, err)
	}
	if got, err := p.topo.SendUDP(appUID, netip.AddrPortFrom(gwV4, otherUDPPort)); err == nil {
		t.Fatalf("UDP passed (%q); want dropped", got)
	}
	if got, err := p.topo.SendUDP(appUID, netip.AddrPortFrom(gwV4, resolverPort)); err != nil || got != "udp 53" {
		t.Fatalf("DNS: %q, %v; want answered", got, err)
	}
	pod, err := adminClient(t).CoreV1().Pods(nsName).Get(context.Background(), "agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if st := pod.Annotations["k8s.v1.cni.cncf.io/network-status"]; strings.Contains(st, "authbridge") || !strings.Contains(st, `"default": true`) {
		t.Fatalf("network-status %q: want the cluster network alone (our empty result adds none)", st)
	}

	flush(t, p, backend, []redirect.Family{redirect.IPv4})
	if _, err := run("CHECK", p); err != nil {
		t.Fatalf("Multus CHECK after a flush: %v (v4.1.0's CHECK was not expected to reach attachments; if it does now, CHECK through Multus covers drift too: update docs/operations.md)", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := run("DEL", p); err != nil {
			t.Fatalf("Multus DEL #%d: %v", i+1, err)
		}
	}
	noRules(t, p)
	if _, err := os.Stat(e.containerStatePath(p)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("record after Multus DEL: %v", err)
	}

	// Fail closed: an attachment whose ADD fails fails the sandbox, and
	// Multus tears the cluster network down again.
	uid2 := createPod(t, nsName, "broken", map[string]string{pluginconf.AttachmentAnnotation: "default/authbridge-cni-broken"}, true, nil)
	p2 := e.newPod(nsName, "broken", uid2)
	if _, err := run("ADD", p2); err == nil || !strings.Contains(err.Error(), "entryFile") {
		t.Fatalf("Multus ADD with a failing attachment: %v; want our error (entryFile)", err)
	}
	err = p2.netns.Do(func(ns.NetNS) error {
		if _, err := netlink.LinkByName("eth0"); err == nil {
			return errors.New("eth0 still in the pod's netns")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after the failed ADD: %v", err)
	}
}
