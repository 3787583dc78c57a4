package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestCommands(t *testing.T) {
	if code, out, _ := runMain("version"); code != 0 || strings.TrimSpace(out) == "" {
		t.Errorf("version: %d %q", code, out)
	}
	if code, _, errs := runMain("frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Errorf("unknown command: %d %q", code, errs)
	}
	// kata dispatches to kataMain.
	if code, _, errs := runMain("kata", "help"); code != 0 || !strings.Contains(errs, "node-agent kata") {
		t.Errorf("kata help: %d %q", code, errs)
	}
	bad := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(bad, []byte("allowCooperative: true\n"), 0o644)
	for _, args := range [][]string{{"run", "--config", bad}, {"--config", bad}} {
		code, _, errs := runMain(args...)
		if code != 1 || !strings.Contains(errs, "refusing to start") || !strings.Contains(errs, "field allowCooperative") {
			t.Errorf("%v: %d %q", args, code, errs)
		}
	}
	if code, _, errs := runMain("run", "--config", filepath.Join(t.TempDir(), "nope.yaml")); code != 1 || !strings.Contains(errs, "nope.yaml") {
		t.Errorf("missing config: %d %q", code, errs)
	}
}

// The one-shot probe prints JSON. Forced failure (the capability
// package's test knob) keeps this from touching the kernel; the real
// probe is tested in pkg/capability.
func TestProbeCommandJSON(t *testing.T) {
	t.Setenv("AUTHBRIDGE_PROBE_FORCE_FAIL", "all")
	code, out, errs := runMain("probe", "--config", filepath.Join(t.TempDir(), "absent.yaml"), "--host-root", "/")
	if code != 3 {
		t.Fatalf("probe with every backend failing: exit %d, stderr %s", code, errs)
	}
	var po probeOutput
	if err := json.Unmarshal([]byte(out), &po); err != nil {
		t.Fatalf("probe output %q: %v", out, err)
	}
	if po.Capable || po.EgressRedirect != "none" || len(po.Results) != 3 || !strings.Contains(po.Results[0].Error, "AUTHBRIDGE_PROBE_FORCE_FAIL") {
		t.Fatalf("probe output: %+v", po)
	}
}

// The probe command probes IPv6 too when the host has it enabled, and says
// which families it probed.
func TestProbeCommandFamilies(t *testing.T) {
	t.Setenv("AUTHBRIDGE_PROBE_FORCE_FAIL", "all")
	dir := t.TempDir()
	for _, tc := range []struct{ sysctl, want string }{{"0\n", "ipv4,ipv6"}, {"1\n", "ipv4"}} {
		p := filepath.Join(dir, "disable_ipv6")
		os.WriteFile(p, []byte(tc.sysctl), 0o644)
		_, out, errs := runMain("probe", "--config", filepath.Join(dir, "absent.yaml"), "--host-root", "/", "--ipv6-disabled-sysctl", p)
		var po probeOutput
		if err := json.Unmarshal([]byte(out), &po); err != nil {
			t.Fatalf("probe output %q (%s): %v", out, errs, err)
		}
		var got []string
		for _, f := range po.Families {
			got = append(got, string(f))
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("disable_ipv6=%q: families %v, want %s", tc.sysctl, got, tc.want)
		}
	}
}

// node-agent uninstall removes entry, binary and credential from the
// configured dirs (real conflist from internal/install's testdata); with
// --keep-labels it needs no API server.
func TestUninstallCommand(t *testing.T) {
	dir := t.TempDir()
	confDir, binDir, credDir := filepath.Join(dir, "net.d"), filepath.Join(dir, "bin"), filepath.Join(dir, "cred")
	for _, d := range []string{confDir, binDir, credDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	kindnet, err := os.ReadFile("../../install/testdata/10-kindnet.conflist")
	if err != nil {
		t.Fatal(err)
	}
	// The conflist as an installed agent leaves it: kindnet plus our entry.
	var cl map[string]any
	if err := json.Unmarshal(kindnet, &cl); err != nil {
		t.Fatal(err)
	}
	cl["plugins"] = append(cl["plugins"].([]any), map[string]any{"type": "authbridge-cni", "stateDir": "/var/run/authbridge"})
	b, _ := json.Marshal(cl)
	conflist := filepath.Join(confDir, "10-kindnet.conflist")
	os.WriteFile(conflist, b, 0o644)
	os.WriteFile(filepath.Join(binDir, "authbridge-cni"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(credDir, "authbridge-cni.kubeconfig"), []byte("token"), 0o600)
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte("cniConfDir: "+confDir+"\ncniBinDir: "+binDir+"\nhostCNIConfDir: "+confDir+"\ncredentialDir: "+credDir+"\n"), 0o644)

	code, _, errs := runMain("uninstall", "--config", cfg, "--keep-labels")
	if code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errs)
	}
	b, _ = os.ReadFile(conflist)
	if strings.Contains(string(b), "authbridge-cni") || !strings.Contains(string(b), "kindnet") {
		t.Fatalf("conflist after uninstall: %s", b)
	}
	for _, p := range []string{filepath.Join(binDir, "authbridge-cni"), filepath.Join(credDir, "authbridge-cni.kubeconfig")} {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s left after uninstall: %v", p, err)
		}
	}
}
