package kata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/policy"
)

// guestKernel returns a Debian kernel (linux-image-cloud-amd64's image),
// fetched once with apt-get download into the project cache
// (AUTHBRIDGE_CACHE, default ~/.cache/authbridge-node, as hack/build-kube.sh).
func guestKernel(t *testing.T) string {
	t.Helper()
	cache := os.Getenv("AUTHBRIDGE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "authbridge-node")
	}
	dir := filepath.Join(cache, "guest-kernel")
	if m, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*")); len(m) > 0 {
		return m[0]
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	deps, err := exec.Command("apt-cache", "depends", "linux-image-cloud-amd64").Output()
	if err != nil {
		t.Fatalf("apt-cache depends linux-image-cloud-amd64: %v", err)
	}
	pkg := regexp.MustCompile(`Depends: (linux-image-\S+)`).FindSubmatch(deps)
	if pkg == nil {
		t.Fatalf("no kernel package in:\n%s", deps)
	}
	dl := exec.Command("apt-get", "download", string(pkg[1]))
	dl.Dir = dir
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("apt-get download %s: %v\n%s", pkg[1], err, out)
	}
	x := exec.Command("sh", "-c", "dpkg-deb --fsys-tarfile linux-image-*.deb | tar -x --wildcards './boot/vmlinuz-*' && rm -f linux-image-*.deb")
	x.Dir = dir
	if out, err := x.CombinedOutput(); err != nil {
		t.Fatalf("extract kernel: %v\n%s", err, out)
	}
	m, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(m) == 0 {
		t.Fatal("no vmlinuz in the kernel package")
	}
	return m[0]
}

// A real Linux kernel unpacks the appended archive over the original one:
// boot a Debian kernel in qemu with an osbuilder-shaped initrd (busybox as
// /init, default-policy.rego -> allow-all.rego) plus our appended policy,
// and read back what the guest sees. This is the guest side of the Kata
// install minus the Kata agent, which Debian does not package.
func TestKernelUnpacksAppendedPolicy(t *testing.T) {
	testenv.Heavy(t, "a Debian kernel (apt-get download) booted in qemu, about 20 s")
	for _, tool := range []string{"qemu-system-x86_64", "cpio", "gzip", "dpkg-deb", "apt-get"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (hack/install-deps.sh installs qemu-system-x86 busybox-static cpio): %v", tool, err)
		}
	}
	busybox := "/bin/busybox"
	if out, err := exec.Command("file", "-L", busybox).Output(); err == nil && !bytes.Contains(out, []byte("statically linked")) {
		t.Fatalf("%s is not static (install busybox-static): %s", busybox, out)
	}
	kernel := guestKernel(t)

	root := t.TempDir()
	for _, d := range []string{"bin", "proc", "dev", "etc/kata-opa"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(root, "bin/busybox"), bb, 0o755)
	allowAll := []byte("package agent_policy\n\ndefault ExecProcessRequest := true\n")
	os.WriteFile(filepath.Join(root, "etc/kata-opa/allow-all.rego"), allowAll, 0o644)
	os.Symlink("allow-all.rego", filepath.Join(root, "etc/kata-opa/default-policy.rego"))
	os.WriteFile(filepath.Join(root, "init"), []byte(`#!/bin/busybox sh
P=/etc/kata-opa/default-policy.rego
if [ -L $P ]; then T=symlink; elif [ -f $P ]; then T=regular; else T=missing; fi
echo "KBOOT type=$T policy=$(/bin/busybox sha256sum < $P | /bin/busybox cut -c1-64) allowall=$(/bin/busybox sha256sum < /etc/kata-opa/allow-all.rego | /bin/busybox cut -c1-64)"
/bin/busybox poweroff -f
`), 0o755)
	mk := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -H newc -o | gzip -9")
	mk.Dir = root
	orig, err := mk.Output()
	if err != nil {
		t.Fatalf("build initrd: %v", err)
	}

	pol := policy.Restrictive()
	var appended bytes.Buffer
	if err := AppendPolicy(&appended, bytes.NewReader(orig), pol); err != nil {
		t.Fatal(err)
	}
	sum := func(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

	boot := func(initrd []byte) string {
		f := filepath.Join(t.TempDir(), "initrd.img")
		os.WriteFile(f, initrd, 0o644)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		// TCG, not KVM: in this nested VM the guest kernel hangs right after
		// "Hypervisor detected: KVM"; TCG boots this tiny guest in seconds.
		out, err := exec.CommandContext(ctx, "qemu-system-x86_64", "-accel", "tcg", "-m", "256",
			"-nographic", "-no-reboot", "-kernel", kernel, "-initrd", f,
			"-append", "console=ttyS0 panic=-1 quiet").CombinedOutput()
		line := regexp.MustCompile(`KBOOT [^\r\n]*`).Find(out)
		if line == nil {
			t.Fatalf("guest printed no result (err %v):\n%s", err, out)
		}
		return string(line)
	}

	want := "KBOOT type=regular policy=" + sum(pol) + " allowall=" + sum(allowAll)
	if got := boot(appended.Bytes()); got != want {
		t.Errorf("appended initrd, guest sees:\n  %s\nwant\n  %s", got, want)
	}
	// Control: the original initrd still boots the allow-all symlink.
	if got := boot(orig); !strings.HasPrefix(got, "KBOOT type=symlink policy="+sum(allowAll)) {
		t.Errorf("original initrd, guest sees: %s", got)
	}
}
