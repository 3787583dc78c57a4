package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cavaliergopher/cpio"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/kata"
	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/policy"
)

const (
	kataCfgDir   = "/opt/kata/share/defaults/kata-containers"
	kataQemuCfg  = kataCfgDir + "/configuration-qemu.toml"
	kataClhCfg   = kataCfgDir + "/configuration-clh.toml"
	kataInitrd   = "/opt/kata/share/kata-containers/kata-containers-initrd.img"
	kataGenerate = "/opt/kata/share/kata-containers/kata-containers-initrd.authbridge-restrictive.img"
)

// Shaped like kata-deploy's configuration-qemu.toml switched to the initrd.
const kataQemuInitrd = `# XXX: WARNING: this file is auto-generated.
[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
initrd = "` + kataInitrd + `"
machine_type = "q35"
enable_annotations = ["enable_iommu", "virtio_fs_extra_args", "kernel_params"]
default_vcpus = 1
default_memory = 2048

[agent.kata]
dial_timeout = 45

[runtime]
internetworking_model="tcfilter"
disable_guest_seccomp=true
`

// kata-deploy's configuration-clh.toml as shipped: the guest boots a disk
// image, which the installer does not modify.
const kataClhImage = `[hypervisor.clh]
path = "/opt/kata/bin/cloud-hypervisor"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
image = "/opt/kata/share/kata-containers/kata-containers.img"

[runtime]
internetworking_model="tcfilter"
`

// guestInitrd is a gzip'd newc archive with a few of a Kata initrd's files.
func guestInitrd(t *testing.T) []byte {
	t.Helper()
	var raw bytes.Buffer
	w := cpio.NewWriter(&raw)
	for _, f := range []struct {
		name string
		mode cpio.FileMode
		body string
	}{
		{"usr", cpio.TypeDir | 0o755, ""},
		{"usr/bin", cpio.TypeDir | 0o755, ""},
		{"usr/bin/kata-agent", cpio.TypeReg | 0o755, "\x7fELF kata-agent"},
		{"init", cpio.TypeSymlink | 0o777, "/usr/bin/kata-agent"},
		// osbuilder AGENT_POLICY=yes: the agent enforces policies.
		{"etc", cpio.TypeDir | 0o755, ""},
		{"etc/kata-opa", cpio.TypeDir | 0o755, ""},
		{"etc/kata-opa/allow-all.rego", cpio.TypeReg | 0o644, "package agent_policy\n"},
		{"etc/kata-opa/default-policy.rego", cpio.TypeSymlink | 0o777, "allow-all.rego"},
	} {
		if err := w.WriteHeader(&cpio.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.body))}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(w, f.body); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	z := gzip.NewWriter(&gz)
	z.Write(raw.Bytes())
	z.Close()
	return gz.Bytes()
}

func writeHost(t *testing.T, root, p string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, p), b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func readHost(t *testing.T, root, p string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func kataAgent(t *testing.T, cs kubernetes.Interface, node, root string) *harness {
	t.Helper()
	h := newAgent(t, cs, node, testConfig(t), func(o *Options) {
		o.Extensions = []NodeExtension{KataExtension{
			Installer:       &kata.NodeInstaller{HostRoot: root, Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
			RecheckInterval: 100 * time.Millisecond,
		}}
	})
	return h
}

// nodeMarks returns the kata label and annotation ("" when absent).
func nodeMarks(t *testing.T, cs kubernetes.Interface, node string) (string, string, bool) {
	t.Helper()
	n, err := cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, hasL := n.Labels[kata.LabelKataPolicy]
	_, hasA := n.Annotations[kata.AnnotationKataPolicySHA256]
	return l, n.Annotations[kata.AnnotationKataPolicySHA256], hasL || hasA
}

func waitEvent(t *testing.T, cs kubernetes.Interface, node, reason, typ, contains string) {
	t.Helper()
	waitFor(t, 30*time.Second, func() (bool, string) {
		evs := events(t, cs, metav1.NamespaceDefault, "Node", node)
		for _, e := range eventsWithReason(evs, reason) {
			if e.Type == typ && strings.Contains(e.Message, contains) {
				return true, ""
			}
		}
		return false, "no " + typ + " " + reason + " event containing " + contains + ": " + describeEvents(evs)
	})
}

// waitWatchStopped waits for the re-check goroutine to end, so it no
// longer touches the temporary host root.
func waitWatchStopped(t *testing.T, h *harness) {
	t.Helper()
	waitFor(t, 30*time.Second, func() (bool, string) {
		return strings.Contains(h.logs.String(), "kata policy re-check stopped"), "re-check loop still running"
	})
}

func TestKataExtensionInstallsRechecksAndKeepsPolicyOnShutdown(t *testing.T) {
	cs := admin(t)
	const node = "kata-node-1"
	createNode(t, cs, node)
	root := t.TempDir()
	writeHost(t, root, kataInitrd, guestInitrd(t))
	writeHost(t, root, kataQemuCfg, []byte(kataQemuInitrd))
	sum := sha256.Sum256(policy.Restrictive())
	wantSHA := hex.EncodeToString(sum[:])

	h := kataAgent(t, cs, node, root)
	h.start(t)
	h.waitReady(t)
	waitFor(t, 30*time.Second, func() (bool, string) {
		l, a, _ := nodeMarks(t, cs, node)
		return l == kata.LabelValueRestrictive && a == wantSHA, "label " + l + " annotation " + a
	})
	waitEvent(t, cs, node, ReasonKataPolicyInstalled, corev1.EventTypeNormal, wantSHA)
	if !strings.Contains(readHost(t, root, kataQemuCfg), kataGenerate) {
		t.Fatal("configuration not pointed at the policy initrd")
	}

	// kata-deploy adds a configuration later: the re-check finds it
	// (image-based, so the node is only partially covered) and says so.
	writeHost(t, root, kataClhCfg, []byte(kataClhImage))
	waitFor(t, 30*time.Second, func() (bool, string) {
		l, a, _ := nodeMarks(t, cs, node)
		return l == kata.LabelValuePartial && a == wantSHA, "label " + l + " annotation " + a
	})
	waitEvent(t, cs, node, ReasonKataPolicyPartial, corev1.EventTypeWarning, "kata-containers.img")

	// kata-deploy upgrades and rewrites the qemu configuration: the policy
	// comes back without an agent restart.
	writeHost(t, root, kataQemuCfg, []byte(kataQemuInitrd))
	waitFor(t, 30*time.Second, func() (bool, string) {
		c := readHost(t, root, kataQemuCfg)
		return strings.Contains(c, kataGenerate), "configuration still points at the original initrd"
	})

	// SIGTERM (rollout): the policy and the label stay.
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	waitWatchStopped(t, h)
	if !strings.Contains(readHost(t, root, kataQemuCfg), kataGenerate) {
		t.Fatal("agent shutdown restored the allow-all initrd")
	}
	if _, err := os.Stat(filepath.Join(root, kataGenerate)); err != nil {
		t.Fatalf("agent shutdown removed the policy initrd: %v", err)
	}
	if l, a, _ := nodeMarks(t, cs, node); l != kata.LabelValuePartial || a != wantSHA {
		t.Fatalf("after shutdown label %q annotation %q, want them kept", l, a)
	}

	// Explicit uninstall (what `node-agent kata uninstall --node` runs; the
	// command lives in internal/agent/cli, which this package cannot import)
	// restores the configurations and clears the marks.
	if err := (&kata.NodeInstaller{HostRoot: root}).Uninstall(context.Background()); err != nil {
		t.Fatalf("kata uninstall: %v", err)
	}
	if err := kata.ClearNodeMarks(context.Background(), cs, node); err != nil {
		t.Fatalf("kata uninstall: clear node marks: %v", err)
	}
	if readHost(t, root, kataQemuCfg) != kataQemuInitrd {
		t.Error("uninstall did not restore the configuration")
	}
	if l, a, has := nodeMarks(t, cs, node); has {
		t.Errorf("after uninstall label %q annotation %q, want both removed", l, a)
	}
}

func TestKataExtensionImageOnlyAndLateKata(t *testing.T) {
	cs := admin(t)
	const node = "kata-node-2"
	createNode(t, cs, node)
	root := t.TempDir() // no Kata yet

	h := kataAgent(t, cs, node, root)
	h.start(t)
	h.waitReady(t)
	if _, _, has := nodeMarks(t, cs, node); has {
		t.Fatal("kata marks on a node without Kata")
	}

	// kata-deploy installs with only the image-based configuration: no
	// label (nothing boots the policy), a Warning Event and a log line.
	writeHost(t, root, kataClhCfg, []byte(kataClhImage))
	waitEvent(t, cs, node, ReasonKataPolicyMissing, corev1.EventTypeWarning, "initdata")
	if _, _, has := nodeMarks(t, cs, node); has {
		t.Error("kata marks published although no configuration carries the policy")
	}
	if !strings.Contains(h.logs.String(), "kata policy not installed on this Kata node") {
		t.Error("no log line for the uncovered Kata node")
	}
	if readHost(t, root, kataClhCfg) != kataClhImage {
		t.Error("image-based configuration modified")
	}

	// Then an initrd configuration appears: partial.
	writeHost(t, root, kataInitrd, guestInitrd(t))
	writeHost(t, root, kataQemuCfg, []byte(kataQemuInitrd))
	waitFor(t, 30*time.Second, func() (bool, string) {
		l, _, _ := nodeMarks(t, cs, node)
		return l == kata.LabelValuePartial, "label " + l
	})
	if err := h.stop(t); err != nil {
		t.Fatal(err)
	}
	waitWatchStopped(t, h)
}

// The Kata installer's weakening option is logged at WARN and exported as
// authbridge_config_weakenings{setting="kata.enableInitdataAnnotation"}.
func TestKataInitdataAnnotationIsAWeakening(t *testing.T) {
	for _, on := range []bool{true, false} {
		h := newAgent(t, admin(t), "node-kata-weak", testConfig(t), func(o *Options) {
			o.Extensions = []NodeExtension{KataExtension{Installer: &kata.NodeInstaller{HostRoot: t.TempDir(), EnableInitdataAnnotation: on}}}
		})
		srv := httptest.NewServer(h.a.Handler())
		s, err := metrics.Scrape(context.Background(), srv.URL+"/metrics")
		srv.Close()
		if err != nil {
			t.Fatal(err)
		}
		v, ok := s.Get("authbridge_config_weakenings", map[string]string{"setting": "kata.enableInitdataAnnotation"})
		warned := strings.Contains(h.logs.String(), `"level":"WARN","msg":"node extension option weakens its policy"`) && strings.Contains(h.logs.String(), `"setting":"kata.enableInitdataAnnotation"`)
		if on && (!ok || v != 1 || !warned) {
			t.Errorf("option on: weakening %v (present %v), warned %v: %s", v, ok, warned, h.logs.String())
		}
		if !on && (ok || warned) {
			t.Errorf("option off but reported: present %v, warned %v", ok, warned)
		}
	}
}
