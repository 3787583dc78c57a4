package kata

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/policy"
)

// fakeInitrd builds an osbuilder-shaped initrd with Debian's cpio and gzip
// (`find . | cpio -H newc -o | gzip -9`, as initrd_builder.sh does): an
// agent binary, an allow-all policy and the default-policy.rego symlink.
func fakeInitrd(t *testing.T) (initrd []byte, files map[string][]byte) {
	t.Helper()
	for _, tool := range []string{"cpio", "gzip", "zcat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (hack/install-deps.sh installs it): %v", tool, err)
		}
	}
	root := t.TempDir()
	files = map[string][]byte{
		"usr/bin/kata-agent":          bytes.Repeat([]byte("\x7fELF fake agent "), 4096),
		"etc/kata-opa/allow-all.rego": []byte("package agent_policy\n\ndefault ExecProcessRequest := true\n"),
		"init":                        []byte("#!/bin/sh\nexec /usr/bin/kata-agent\n"),
	}
	for p, b := range files {
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("allow-all.rego", filepath.Join(root, "etc/kata-opa/default-policy.rego")); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -H newc -o | gzip -9")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("build fake initrd: %v", err)
	}
	return out, files
}

func TestAppendPolicyUnpacksWithDebianCpio(t *testing.T) {
	orig, files := fakeInitrd(t)
	pol := policy.Restrictive()
	var buf bytes.Buffer
	if err := AppendPolicy(&buf, bytes.NewReader(orig), pol); err != nil {
		t.Fatal(err)
	}
	got := buf.Bytes()
	if len(got) <= len(orig) || !bytes.Equal(got[:len(orig)], orig) {
		t.Fatalf("the new initrd does not start with the original's %d bytes", len(orig))
	}

	// Unpack the way the kernel does: archive after archive, each one
	// replacing what is there. GNU cpio stops at the first TRAILER!!! (it
	// does not read concatenated archives), so each gzip member is fed to its
	// own cpio: the original bytes, then what was appended. -u replaces
	// existing entries unconditionally like the kernel (Debian's cpio would
	// otherwise keep the "newer" symlink; the appended entries carry mtime 0).
	dir := t.TempDir()
	for i, part := range [][]byte{got[:len(orig)], got[len(orig):]} {
		file := filepath.Join(t.TempDir(), "part.gz")
		if err := os.WriteFile(file, part, 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", "zcat "+file+" | cpio --quiet -idmu")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("part %d: zcat | cpio -idmu: %v\n%s", i, err, out)
		}
	}
	// And zcat alone reads both gzip members of the new initrd: the
	// decompressed stream is the original archive followed by ours.
	zcat := func(b []byte) []byte {
		cmd := exec.Command("zcat")
		cmd.Stdin = bytes.NewReader(b)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("zcat: %v", err)
		}
		return out
	}
	if whole := zcat(got); !bytes.Equal(whole, append(zcat(orig), zcat(got[len(orig):])...)) {
		t.Error("zcat of the new initrd is not the original archive followed by the policy archive")
	}
	policyPath := filepath.Join(dir, "etc/kata-opa/default-policy.rego")
	fi, err := os.Lstat(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
		t.Errorf("default-policy.rego is %v, want a regular file 0644 replacing the symlink", fi.Mode())
	}
	if b, _ := os.ReadFile(policyPath); !bytes.Equal(b, pol) {
		t.Errorf("unpacked policy differs from policy/default-restrictive.rego")
	}
	for p, want := range files {
		if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || !bytes.Equal(b, want) {
			t.Errorf("original file %s changed or missing: %v", p, err)
		}
	}
	for _, d := range []string{"etc", "etc/kata-opa"} {
		if fi, err := os.Stat(filepath.Join(dir, d)); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v, want a 0755 directory", d, fi.Mode(), err)
		}
	}

	// The appended member alone is a complete newc archive: parents first,
	// then the file, owned by root.
	member, err := PolicyCPIO(pol)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[len(orig):], member) {
		t.Error("appended bytes differ from PolicyCPIO")
	}
	list := exec.Command("sh", "-c", "zcat | cpio --quiet -itv")
	list.Stdin = bytes.NewReader(member)
	out, err := list.Output()
	if err != nil {
		t.Fatalf("cpio -itv: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 || !strings.HasSuffix(lines[0], " etc") || !strings.HasSuffix(lines[1], " etc/kata-opa") || !strings.HasSuffix(lines[2], " etc/kata-opa/default-policy.rego") {
		t.Fatalf("member listing:\n%s", out)
	}
	for _, l := range lines {
		if !strings.Contains(l, " root ") {
			t.Errorf("entry not owned by root: %s", l)
		}
	}
	// Same policy, same bytes: installs are reproducible.
	again, _ := PolicyCPIO(pol)
	if !bytes.Equal(again, member) {
		t.Error("PolicyCPIO is not deterministic")
	}
}
