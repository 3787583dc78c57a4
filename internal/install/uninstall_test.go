package install

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// fakePlugin is a real executable standing in for the plugin binary (the
// plugin is built by another package; here only its bytes matter).
func fakePlugin(t testing.TB, dir, msg string) string {
	t.Helper()
	p := filepath.Join(dir, "authbridge-cni-src")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+msg+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestInstallBinary(t *testing.T) {
	src := fakePlugin(t, t.TempDir(), "v1")
	bin := filepath.Join(t.TempDir(), "opt", "cni", "bin")
	changed, err := InstallBinary(src, bin, pluginconf.PluginType)
	if err != nil || !changed {
		t.Fatalf("first install: %v %v", changed, err)
	}
	dst := filepath.Join(bin, pluginconf.PluginType)
	fi, err := os.Stat(dst)
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Fatalf("installed binary: %v %v", fi, err)
	}
	if out, err := exec.Command(dst).Output(); err != nil || string(out) != "v1\n" {
		t.Fatalf("run installed plugin: %q %v", out, err)
	}
	ino := inode(t, dst)
	if changed, err := InstallBinary(src, bin, pluginconf.PluginType); err != nil || changed {
		t.Fatalf("identical install: changed=%v err=%v", changed, err)
	}
	if inode(t, dst) != ino {
		t.Error("identical binary rewritten")
	}
	// A new version replaces it by rename (new inode; a running old copy
	// keeps its own).
	src2 := fakePlugin(t, t.TempDir(), "v2")
	if changed, err := InstallBinary(src2, bin, pluginconf.PluginType); err != nil || !changed {
		t.Fatalf("upgrade: %v %v", changed, err)
	}
	if inode(t, dst) == ino {
		t.Error("binary replaced in place, not by rename")
	}
	if out, _ := exec.Command(dst).Output(); string(out) != "v2\n" {
		t.Errorf("upgraded plugin prints %q", out)
	}
	// Same bytes but a wrong mode is repaired.
	if err := os.Chmod(dst, 0o644); err != nil {
		t.Fatal(err)
	}
	if changed, _ := InstallBinary(src2, bin, pluginconf.PluginType); !changed {
		t.Error("mode 0644 not repaired")
	}
	assertNoTempFiles(t, bin)
	if _, err := InstallBinary(src, bin, "../escape"); err == nil {
		t.Error("path in binary name accepted")
	}
	if err := RemoveBinary(bin, pluginconf.PluginType); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Error("binary still there")
	}
	if err := RemoveBinary(bin, pluginconf.PluginType); err != nil {
		t.Errorf("second remove: %v", err)
	}
}

func installed(t *testing.T) Options {
	t.Helper()
	o := testOptions(t.TempDir())
	o.BinDir = t.TempDir()
	o.SourceBinary = fakePlugin(t, t.TempDir(), "plugin")
	copyFixture(t, o.ConfDir, "10-kindnet.conflist", 0o644)
	if _, err := Install(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	o.KubeconfigPath = filepath.Join(o.ConfDir, testKubeconfigName)
	tok := fakeJWT(t, "x", time.Now(), time.Now().Add(time.Hour))
	if err := WriteKubeconfig(o.KubeconfigPath, "https://10.96.0.1:443", []byte(testCA), tok); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestUninstallRemovesEntryBeforeBinary records the kernel's own order of
// the two changes: one inotify instance watches both dirs, so its event
// queue is ordered like the syscalls.
func TestUninstallRemovesEntryBeforeBinary(t *testing.T) {
	o := installed(t)
	conf := filepath.Join(o.ConfDir, "10-kindnet.conflist")
	bin := filepath.Join(o.BinDir, pluginconf.PluginType)
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for _, d := range []string{o.ConfDir, o.BinDir} {
		if err := w.Add(d); err != nil {
			t.Fatal(err)
		}
	}
	if err := Uninstall(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	var order []string
	timeout := time.After(10 * time.Second)
	for len(order) < 2 {
		var ev fsnotify.Event
		select {
		case ev = <-w.Events:
		case <-timeout:
			t.Fatalf("saw only %v", order)
		}
		switch {
		case ev.Name == conf && ev.Has(fsnotify.Create): // rename of the rewritten conflist
			order = append(order, "entry removed")
		case ev.Name == bin && ev.Has(fsnotify.Remove):
			order = append(order, "binary removed")
		}
	}
	t.Logf("order: %v", order)
	if order[0] != "entry removed" || order[1] != "binary removed" {
		t.Fatalf("order %v", order)
	}
	if hasOurEntryLast(t, conf) {
		t.Error("entry still there")
	}
	if _, err := os.Stat(bin); !os.IsNotExist(err) {
		t.Error("binary still there")
	}
	if _, err := os.Stat(o.KubeconfigPath); !os.IsNotExist(err) {
		t.Error("kubeconfig (a credential) left on the host")
	}
}

// TestUninstallKeepsBinaryWhenEntryRemovalFails: a conflist that does not
// parse might still hold our entry, so the binary must stay.
func TestUninstallKeepsBinaryWhenEntryRemovalFails(t *testing.T) {
	o := installed(t)
	broken := filepath.Join(o.ConfDir, "20-broken.conflist")
	if err := os.WriteFile(broken, []byte(`{"plugins": [{"type": "authbridge-cni"`), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Uninstall(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), broken) {
		t.Fatalf("error %v does not name %s", err, broken)
	}
	if _, err := os.Stat(filepath.Join(o.BinDir, pluginconf.PluginType)); err != nil {
		t.Fatalf("binary removed although an entry may remain: %v", err)
	}
	if _, err := os.Stat(o.KubeconfigPath); err != nil {
		t.Fatalf("kubeconfig removed although an entry may remain: %v", err)
	}
	if hasOurEntryLast(t, filepath.Join(o.ConfDir, "10-kindnet.conflist")) {
		t.Error("entry not removed from the good file")
	}
	// Once the file is fixed (here: removed), uninstall completes.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if err := Uninstall(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(o.BinDir, pluginconf.PluginType)); !os.IsNotExist(err) {
		t.Error("binary still there")
	}
}

func TestAtomicWriteKeepsOwner(t *testing.T) {
	testenv.Root(t, "chown to another user")
	dir := t.TempDir()
	p := copyFixture(t, dir, "10-flannel.conflist", 0o644)
	if err := os.Chown(p, 4242, 4343); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallEntry(testOptions(dir)); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 4242 || st.Gid != 4343 {
		t.Errorf("owner %d:%d, want 4242:4343", st.Uid, st.Gid)
	}
}
