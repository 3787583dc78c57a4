package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/internal/kata"
	"github.com/kagenti/authbridge-node/policy"
)

func runKata(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := kataMain(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestMainInitdataPresets(t *testing.T) {
	for _, preset := range append([]string{""}, policy.Presets...) {
		args := []string{"initdata"}
		want := policy.PresetRestrictive
		if preset != "" {
			args = append(args, "--preset", preset)
			want = preset
		}
		code, out, errs := runKata(t, args...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errs)
		}
		d, raw, err := kata.DecodeInitdataAnnotation(strings.TrimSpace(out))
		if err != nil {
			t.Fatalf("%v: stdout is not an initdata annotation value: %v", args, err)
		}
		src, _ := policy.Preset(want)
		if d.Data[kata.InitdataKeyPolicy] != string(src) {
			t.Errorf("%v: policy.rego is not preset %s", args, want)
		}
		doc, _ := kata.BuildInitdata(kata.InitdataOptions{Policy: src})
		if !bytes.Equal(raw, doc.TOML) || !strings.Contains(errs, doc.DigestHex()) {
			t.Errorf("%v: stderr does not carry the digest %s: %s", args, doc.DigestHex(), errs)
		}
	}
}

func TestMainInitdataFormatsAndFiles(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "mine.rego")
	os.WriteFile(good, []byte("package agent_policy\n\nimport rego.v1\n\ndefault ExecProcessRequest := false\n\nExecProcessRequest if input.process.Args == [\"/bin/healthcheck\"]\n"), 0o644)
	bad := filepath.Join(dir, "bad.rego")
	os.WriteFile(bad, []byte("package agent_policy\n\ndefault ExecProcessRequest := \n"), 0o644)
	aa := filepath.Join(dir, "aa.toml")
	os.WriteFile(aa, []byte("[token_configs.kbs]\nurl = 'https://kbs:8080'\n"), 0o644)

	code, out, errs := runKata(t, "initdata", "--policy-file", good, "--aa-toml", aa, "--format", "yaml", "--platform", "tdx")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var pod struct {
		Metadata struct {
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
	}
	if err := yaml.Unmarshal([]byte(out), &pod); err != nil {
		t.Fatalf("yaml output: %v\n%s", err, out)
	}
	d, _, err := kata.DecodeInitdataAnnotation(pod.Metadata.Annotations[kata.AnnotationInitdata])
	if err != nil || !strings.Contains(d.Data[kata.InitdataKeyPolicy], "/bin/healthcheck") || d.Data[kata.InitdataKeyAA] == "" {
		t.Fatalf("yaml annotation does not carry the user policy and aa.toml: %v", err)
	}
	if !strings.Contains(errs, "as tdx reports it: ") {
		t.Errorf("no TDX digest on stderr: %s", errs)
	}

	code, out, _ = runKata(t, "initdata", "--format", "toml", "--algorithm", "sha512")
	if code != 0 || !strings.HasPrefix(out, "algorithm = \"sha512\"\nversion = \"0.1.0\"\n") {
		t.Fatalf("toml output (exit %d):\n%.120s", code, out)
	}

	code, out, errs = runKata(t, "initdata", "--policy-file", bad)
	if code != 1 || out != "" || !strings.Contains(errs, "does not parse") || !strings.Contains(errs, "bad.rego:") {
		t.Errorf("invalid policy: exit %d, stdout %q, stderr %s", code, out, errs)
	}
	for _, args := range [][]string{
		{"initdata", "--preset", "allow-all"},
		{"initdata", "--preset", "deny-logs", "--policy-file", good},
		{"initdata", "--format", "json"},
		{"initdata", "extra"},
		{"nope"},
		{},
	} {
		if code, out, _ := runKata(t, args...); code != 2 || out != "" {
			t.Errorf("%v: exit %d, stdout %q; want usage error 2", args, code, out)
		}
	}
	if code, out, _ := runKata(t, "policy", "--preset", "allow-exec"); code != 0 || !strings.Contains(out, "default ExecProcessRequest := true") {
		t.Errorf("policy --preset allow-exec: exit %d", code)
	}
}

// kataHost is a minimal Kata node under a temp host root: one QEMU
// configuration booting an initrd (a real gzip'd newc cpio archive built by
// Debian's cpio); internal/kata's own tests cover the installer in depth.
type kataHost struct{ root, cfg string }

const kataQemuConfig = `[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
initrd = "/opt/kata/share/kata-containers/kata-containers-initrd.img"
machine_type = "q35"
`

func newKataHost(t *testing.T) *kataHost {
	t.Helper()
	h := &kataHost{root: t.TempDir(), cfg: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"}
	initrdDir := filepath.Join(h.root, "/opt/kata/share/kata-containers")
	for _, d := range []string{filepath.Dir(h.on(h.cfg)), initrdDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(h.on(h.cfg), []byte(kataQemuConfig), 0o644); err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	if err := os.MkdirAll(filepath.Join(src, "usr/bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "usr/bin/kata-agent"), []byte("\x7fELF fake agent"), 0o755); err != nil {
		t.Fatal(err)
	}
	// osbuilder AGENT_POLICY=yes: the guest's agent enforces policies.
	if err := os.MkdirAll(filepath.Join(src, "etc/kata-opa"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc/kata-opa/allow-all.rego"), []byte("package agent_policy\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -H newc -o | gzip -9 > "+filepath.Join(initrdDir, "kata-containers-initrd.img"))
	cmd.Dir = src
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build fake initrd (cpio and gzip from hack/install-deps.sh): %v: %s", err, out)
	}
	return h
}

func (h *kataHost) on(p string) string { return filepath.Join(h.root, p) }

func (h *kataHost) read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(h.on(p))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMainInstallUninstall(t *testing.T) {
	h := newKataHost(t)
	code, out, errs := runKata(t, "install", "--host-root", h.root)
	if code != 0 || !strings.Contains(out, kata.LabelKataPolicy+"=restrictive") || !strings.Contains(out, kata.AnnotationKataPolicySHA256+"=") {
		t.Fatalf("install: exit %d\n%s\n%s", code, out, errs)
	}
	if code, _, errs := runKata(t, "uninstall", "--host-root", h.root); code != 0 {
		t.Fatalf("uninstall: exit %d: %s", code, errs)
	}
	if string(h.read(t, h.cfg)) != kataQemuConfig {
		t.Error("uninstall did not restore the configuration")
	}
}

// policy/peer-pods/peer-pods-cm.yaml is the rendered example the docs point
// at; regenerate with UPDATE_GOLDEN=1 go test ./internal/agent/cli -run PeerPods.
func TestPeerPodsConfigMap(t *testing.T) {
	code, out, errs := runKata(t, "peer-pods-configmap")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var cm struct {
		Kind     string `json:"kind"`
		Metadata struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"metadata"`
		Data map[string]string `json:"data"`
	}
	if err := yaml.Unmarshal([]byte(out), &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != "peer-pods-cm" || cm.Metadata.Namespace != "confidential-containers-system" || len(cm.Data) != 1 {
		t.Fatalf("ConfigMap = %+v", cm)
	}
	d, _, err := kata.DecodeInitdataAnnotation(cm.Data["INITDATA"])
	if err != nil || d.Data[kata.InitdataKeyPolicy] != string(policy.Restrictive()) {
		t.Fatalf("INITDATA does not carry the restrictive policy: %v", err)
	}
	golden := filepath.Join("..", "..", "..", "policy", "peer-pods", "peer-pods-cm.yaml")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(golden); err != nil || string(b) != out {
		t.Errorf("%s is stale or missing (%v): regenerate with UPDATE_GOLDEN=1 go test ./internal/agent/cli -run PeerPods", golden, err)
	}
}

// The Helm values file for the peerpods chart (what survives helm upgrade);
// policy/peer-pods/helm-values-libvirt.yaml is the rendered example.
func TestPeerPodsHelmValues(t *testing.T) {
	code, out, errs := runKata(t, "peer-pods-configmap", "--helm-provider", "libvirt")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var v struct {
		ProviderConfigs map[string]map[string]string `json:"providerConfigs"`
	}
	if err := yaml.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	if len(v.ProviderConfigs) != 1 || len(v.ProviderConfigs["libvirt"]) != 1 {
		t.Fatalf("values = %+v", v)
	}
	d, _, err := kata.DecodeInitdataAnnotation(v.ProviderConfigs["libvirt"]["INITDATA"])
	if err != nil || d.Data[kata.InitdataKeyPolicy] != string(policy.Restrictive()) {
		t.Fatalf("INITDATA does not carry the restrictive policy: %v", err)
	}
	golden := filepath.Join("..", "..", "..", "policy", "peer-pods", "helm-values-libvirt.yaml")
	if os.Getenv("UPDATE_GOLDEN") == "1" {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if b, err := os.ReadFile(golden); err != nil || string(b) != out {
		t.Errorf("%s is stale or missing (%v): regenerate with UPDATE_GOLDEN=1 go test ./internal/kata -run PeerPods", golden, err)
	}
	if code, _, errs := runKata(t, "peer-pods-configmap", "--helm-provider", "AWS: x"); code != 2 || !strings.Contains(errs, "provider key") {
		t.Errorf("bad provider: exit %d, %s", code, errs)
	}
}
