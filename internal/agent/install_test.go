package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kagenti/authbridge-node/internal/install"
	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/decision"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// The production installer (internal/install's Keeper and the Node-bound
// PluginCredential) in a temp conf dir holding kindnet's real conflist,
// against the real API server with the manifests' RBAC: the plugin's
// kubeconfig (0600 in a 0700 dir outside the conf dir, a token of the
// plugin's own ServiceAccount bound to the Node), binary and entry
// installed; entry re-inserted after the primary CNI rewrites its file; a
// plain stop (rollout) leaves everything; a real uninstall removes entry,
// binary and credential.
func TestRunWithPluginInstaller(t *testing.T) {
	srv := apiserver.Shared(t)
	adm := admin(t)
	ctx := context.Background()
	applyRBAC(t, adm, "base")
	node := "node-install"
	createNode(t, adm, node)

	f := newInstallFixture(t, srv, node)
	dir, confDir, binDir, credDir := f.dir, f.confDir, f.binDir, f.credDir
	kindnet, err := os.ReadFile("../install/testdata/10-kindnet.conflist")
	if err != nil {
		t.Fatal(err)
	}
	conflist := filepath.Join(confDir, "10-kindnet.conflist")
	os.WriteFile(conflist, kindnet, 0o644)
	// An earlier version's kubeconfig (pod-bound token) in the conf dir.
	os.WriteFile(filepath.Join(confDir, KubeconfigName), []byte("old"), 0o600)
	start := func(uninstall bool) *harness {
		h, _ := f.start(t, uninstall, true)
		return h
	}
	h := start(false)

	// Entry: last, type authbridge-cni, host paths, policy inline.
	var cl struct {
		Plugins []map[string]any `json:"plugins"`
	}
	b, _ := os.ReadFile(conflist)
	if err := json.Unmarshal(b, &cl); err != nil {
		t.Fatal(err)
	}
	last := cl.Plugins[len(cl.Plugins)-1]
	kc := filepath.Join(credDir, PluginKubeconfigName)
	if last["type"] != "authbridge-cni" || last["kubeconfig"] != kc || last["stateDir"] != f.cfg.StateDir || last["defaultMode"] != "enforce-redirect" || last["logFile"] != filepath.Join(dir, "cni.log") {
		t.Fatalf("entry: %v", last)
	}
	if fi, err := os.Stat(filepath.Join(binDir, "authbridge-cni")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary: %v %v", fi, err)
	}
	// The credential: 0600 in a 0700 dir, not in the conf dir; the old
	// conf-dir kubeconfig is gone.
	fi, err := os.Stat(kc)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("plugin kubeconfig: %v %v", fi, err)
	}
	if di, err := os.Stat(credDir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("credential dir: %v %v", di, err)
	}
	if _, err := os.Stat(filepath.Join(confDir, KubeconfigName)); !os.IsNotExist(err) {
		t.Fatalf("old kubeconfig still in the conf dir: %v", err)
	}
	// The plugin's credential is its own identity with its own RBAC.
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := kubernetes.NewForConfig(rc)
	rev, err := pc.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if u := rev.Status.UserInfo; u.Username != "system:serviceaccount:authbridge-system:"+PluginServiceAccount || len(u.Extra["authentication.kubernetes.io/node-name"]) != 1 || u.Extra["authentication.kubernetes.io/node-name"][0] != node {
		t.Fatalf("plugin identity = %+v; want the %s ServiceAccount bound to Node %s", u, PluginServiceAccount, node)
	}

	// Run serves the plugin's decision queries from its node-scoped cache.
	createNamespace(t, adm, "install-ns")
	wl := createPod(t, adm, "install-ns", "workload", node, true, nil)
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	defer qcancel()
	var ans decision.Response
	waitFor(t, 10*time.Second, func() (bool, string) {
		ans, err = decision.Query(qctx, filepath.Join(f.cfg.StateDir, decision.SocketName), decision.Request{Namespace: "install-ns", Name: "workload", UID: string(wl.UID)})
		return err == nil && ans.Source == decision.SourceCache, fmt.Sprintf("%+v %v", ans, err)
	})
	if ans.Pod == nil || ans.Pod.UID != wl.UID {
		t.Fatalf("decision answer: %+v", ans)
	}
	if v, ok := h.scrape(t).Get("authbridge_decision_answers_total", map[string]string{"source": "cache"}); !ok || v < 1 {
		t.Fatalf("decision_answers_total{cache} = %v %v", v, ok)
	}

	// The primary CNI rewrites its file without our entry.
	os.WriteFile(conflist, kindnet, 0o644)
	waitFor(t, 10*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(conflist)
		return strings.Contains(string(b), "authbridge-cni") && h.scrape(t)["authbridge_conflist_reinsertions_total"] >= 1, "re-insertion"
	})

	// A stop that is not an uninstall (rollout, reboot) leaves it all.
	if err := h.stop(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	b, _ = os.ReadFile(conflist)
	if !strings.Contains(string(b), "authbridge-cni") {
		t.Errorf("entry removed by a plain agent stop: %s", b)
	}
	for _, p := range []string{filepath.Join(binDir, "authbridge-cni"), kc} {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("%s removed by a plain agent stop: %v", p, err)
		}
	}

	// A real uninstall removes entry, binary, credential.
	h = start(true)
	if err := h.stop(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	b, _ = os.ReadFile(conflist)
	if strings.Contains(string(b), "authbridge-cni") {
		t.Errorf("entry left after uninstall: %s", b)
	}
	for _, p := range []string{filepath.Join(binDir, "authbridge-cni"), kc} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after uninstall: %v", p, err)
		}
	}
}

// agentClient is a client with a TokenRequest token of the agent's
// ServiceAccount (applyRBAC(t, cs, "base") first): RBAC as in production.
func agentClient(t *testing.T) kubernetes.Interface {
	srv := apiserver.Shared(t)
	t.Helper()
	tok, err := srv.ServiceAccountToken(context.Background(), "authbridge-system", "authbridge-node", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(srv.TokenConfig(tok))
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// TestRunWithPluginInstallerMultusAttachment: on a node whose default
// network is Multus (OpenShift's 00-multus.conf, as an earlier chain-mode
// agent left it: converted to 00-multus.conflist with our entry), the
// agent in cniInstallMode auto picks multus-attachment: it restores the
// Cluster Network Operator's file byte for byte and never edits it, writes
// the entry the NetworkAttachmentDefinition names (0600, the same fields as
// a conflist entry) and the binary, is ready; a real uninstall removes the
// entry file, binary and credential and leaves 00-multus.conf alone.
func TestRunWithPluginInstallerMultusAttachment(t *testing.T) {
	srv := apiserver.Shared(t)
	adm := admin(t)
	applyRBAC(t, adm, "base")
	node := "node-install-multus"
	createNode(t, adm, node)

	f := newInstallFixture(t, srv, node)
	confDir, binDir, credDir := f.confDir, f.binDir, f.credDir
	multus, err := os.ReadFile("../install/testdata/00-multus.conf")
	if err != nil {
		t.Fatal(err)
	}
	multusConf := filepath.Join(confDir, "00-multus.conf")
	os.WriteFile(multusConf, multus, 0o600)
	// What the chain mode made of it.
	if _, err := install.InstallEntry(install.Options{ConfDir: confDir, Entry: map[string]any{"type": "authbridge-cni", "stateDir": "/old"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(multusConf); !os.IsNotExist(err) {
		t.Fatalf("test setup: 00-multus.conf not converted: %v", err)
	}
	if f.cfg.CNIInstallMode != config.InstallAuto {
		t.Fatalf("test config's cniInstallMode %q, want the default auto", f.cfg.CNIInstallMode)
	}
	var inst *PluginInstaller
	start := func(uninstall bool) *harness {
		var h *harness
		h, inst = f.start(t, uninstall, false)
		return h
	}
	h := start(false)

	if got, err := os.ReadFile(multusConf); err != nil || string(got) != string(multus) {
		t.Fatalf("00-multus.conf not restored byte for byte: %v\n%s", err, got)
	}
	names, _ := filepath.Glob(filepath.Join(confDir, "*"))
	if len(names) != 1 {
		t.Fatalf("conf dir holds %v; want only 00-multus.conf", names)
	}
	entryFile := filepath.Join(credDir, pluginconf.EntryFileName)
	if inst.EntryFile() != entryFile {
		t.Fatalf("EntryFile() = %s, want %s", inst.EntryFile(), entryFile)
	}
	fi, err := os.Stat(entryFile)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("entry file: %v %v", fi, err)
	}
	var entry map[string]any
	b, _ := os.ReadFile(entryFile)
	if err := json.Unmarshal(b, &entry); err != nil {
		t.Fatal(err)
	}
	kc := filepath.Join(credDir, PluginKubeconfigName)
	if entry["type"] != "authbridge-cni" || entry["kubeconfig"] != kc || entry["stateDir"] != f.cfg.StateDir || entry["defaultMode"] != "enforce-redirect" {
		t.Fatalf("entry file: %v", entry)
	}
	if _, err := os.Stat(filepath.Join(binDir, "authbridge-cni")); err != nil {
		t.Fatalf("binary: %v", err)
	}
	if err := h.stop(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if _, err := os.Stat(entryFile); err != nil {
		t.Fatalf("entry file removed by a plain stop: %v", err)
	}

	h = start(true)
	if err := h.stop(t); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for _, p := range []string{entryFile, filepath.Join(binDir, "authbridge-cni"), kc} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after uninstall: %v", p, err)
		}
	}
	if got, err := os.ReadFile(multusConf); err != nil || string(got) != string(multus) {
		t.Fatalf("00-multus.conf changed by the uninstall: %v\n%s", err, got)
	}
}

// installFixture is a node's CNI dirs in a temp dir, a stand-in plugin
// binary, the API server's CA and an agent whose installer uses them.
type installFixture struct {
	dir, confDir, binDir, credDir, plugin, caFile string
	srv                                           *apiserver.Server
	node                                          string
	agentCS                                       kubernetes.Interface
	cfg                                           config.Agent
}

func newInstallFixture(t *testing.T, srv *apiserver.Server, node string) *installFixture {
	t.Helper()
	dir := t.TempDir()
	f := &installFixture{dir: dir, confDir: filepath.Join(dir, "net.d"), binDir: filepath.Join(dir, "bin"),
		credDir: filepath.Join(dir, "var-lib-authbridge"), plugin: filepath.Join(dir, "authbridge-cni"),
		caFile: filepath.Join(dir, "ca.crt"), srv: srv, node: node}
	for _, d := range []string{f.confDir, f.binDir} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(f.plugin, []byte("#!/bin/sh\necho plugin\n"), 0o755)
	os.WriteFile(f.caFile, srv.CA, 0o644)
	f.agentCS = agentClient(t)
	f.cfg = testConfig(t)
	f.cfg.CNIConfDir, f.cfg.CNIBinDir, f.cfg.HostCNIConfDir, f.cfg.CredentialDir = f.confDir, f.binDir, f.confDir, f.credDir
	return f
}

// start runs an agent with a fresh installer (uninstall: what its shutdown
// check answers; countReinserts wires the reinsertion metric) until ready.
func (f *installFixture) start(t *testing.T, uninstall, countReinserts bool) (*harness, *PluginInstaller) {
	t.Helper()
	inst := &PluginInstaller{Config: f.cfg, SourceBinary: f.plugin, PluginLogFile: filepath.Join(f.dir, "cni.log"),
		Credential: &PluginCredential{Client: f.agentCS, Namespace: "authbridge-system", NodeName: f.node, Server: f.srv.URL, CAFile: f.caFile}}
	h := newAgent(t, f.agentCS, f.node, f.cfg, func(o *Options) {
		o.Installer = inst
		o.UninstallCheck = func(context.Context) Verdict { return Verdict{Uninstall: uninstall, Why: "test"} }
	})
	if countReinserts {
		inst.OnReinsert = h.a.Metrics().ConflistReinsertions.Inc
	}
	h.start(t)
	h.waitReady(t)
	return h, inst
}
