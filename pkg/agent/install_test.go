package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// The production installer (pkg/install's Keeper and TokenRefresher) in a
// temp conf dir holding kindnet's real conflist, with a real TokenRequest
// token: kubeconfig (0600, usable), binary and entry installed; entry
// re-inserted after the primary CNI rewrites its file; kubeconfig
// rewritten when the token rotates; on shutdown entry, binary and
// kubeconfig removed.
func TestRunWithPluginInstaller(t *testing.T) {
	adm := admin(t)
	ctx := context.Background()
	applyRBAC(t, adm, "base")
	node := "node-install"
	createNode(t, adm, node)

	dir := t.TempDir()
	confDir, binDir, saDir := filepath.Join(dir, "net.d"), filepath.Join(dir, "bin"), filepath.Join(dir, "sa")
	for _, d := range []string{confDir, binDir, saDir} {
		os.MkdirAll(d, 0o755)
	}
	kindnet, err := os.ReadFile("../install/testdata/10-kindnet.conflist")
	if err != nil {
		t.Fatal(err)
	}
	conflist := filepath.Join(confDir, "10-kindnet.conflist")
	os.WriteFile(conflist, kindnet, 0o644)
	plugin := filepath.Join(dir, "authbridge-cni")
	os.WriteFile(plugin, []byte("#!/bin/sh\necho plugin\n"), 0o755)
	tok, err := srv.ServiceAccountToken(ctx, "authbridge-system", "authbridge-node", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(saDir, "token"), []byte(tok), 0o600)
	os.WriteFile(filepath.Join(saDir, "ca.crt"), srv.CA, 0o644)

	cfg := testConfig(t)
	cfg.CNIConfDir, cfg.CNIBinDir, cfg.HostCNIConfDir = confDir, binDir, confDir
	inst := &PluginInstaller{Config: cfg, SourceBinary: plugin, PluginLogFile: filepath.Join(dir, "cni.log"),
		TokenFile: filepath.Join(saDir, "token"), CAFile: filepath.Join(saDir, "ca.crt"), APIServer: srv.URL}
	h := newAgent(t, adm, node, cfg, func(o *Options) { o.Installer = inst })
	inst.OnReinsert = h.a.Metrics().ConflistReinsertions.Inc
	inst.OnRefresh = h.a.Metrics().TokenRefreshes.Inc
	h.start(t)
	h.waitReady(t)

	// Entry: last, type authbridge-cni, host paths, policy inline.
	var cl struct {
		Plugins []map[string]any `json:"plugins"`
	}
	b, _ := os.ReadFile(conflist)
	if err := json.Unmarshal(b, &cl); err != nil {
		t.Fatal(err)
	}
	last := cl.Plugins[len(cl.Plugins)-1]
	kc := filepath.Join(confDir, KubeconfigName)
	if last["type"] != "authbridge-cni" || last["kubeconfig"] != kc || last["stateDir"] != cfg.StateDir || last["defaultMode"] != "enforce-redirect" || last["logFile"] != filepath.Join(dir, "cni.log") {
		t.Fatalf("entry: %v", last)
	}
	if fi, err := os.Stat(filepath.Join(binDir, "authbridge-cni")); err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("binary: %v %v", fi, err)
	}
	fi, err := os.Stat(kc)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig: %v %v", fi, err)
	}
	// The kubeconfig the plugin will use works against the API server.
	rc, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	pc, _ := kubernetes.NewForConfig(rc)
	if _, err := pc.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil {
		t.Fatalf("plugin kubeconfig: %v", err)
	}

	// The primary CNI rewrites its file without our entry.
	os.WriteFile(conflist, kindnet, 0o644)
	waitFor(t, 10*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(conflist)
		return strings.Contains(string(b), "authbridge-cni") && h.scrape(t)["authbridge_conflist_reinsertions_total"] >= 1, "re-insertion"
	})
	// The kubelet rotates the token.
	tok2, err := srv.ServiceAccountToken(ctx, "authbridge-system", "authbridge-node", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(saDir, "token"), []byte(tok2), 0o600)
	waitFor(t, 10*time.Second, func() (bool, string) {
		b, _ := os.ReadFile(kc)
		return strings.Contains(string(b), tok2) && h.scrape(t)["authbridge_token_refreshes_total"] == 1, "token refresh"
	})

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
