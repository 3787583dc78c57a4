package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
)

func noTemps(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func mode(t *testing.T, p string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestWriteContentAndMode(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f.conflist")
	// The umask must not decide the mode: 0o755 survives a 0o077 umask.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := Write(p, []byte("one"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := mode(t, p); got != 0o755 {
		t.Errorf("mode %v, want 0755", got)
	}
	if err := Write(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "two" {
		t.Errorf("content %q, want %q", b, "two")
	}
	if got := mode(t, p); got != 0o600 {
		t.Errorf("mode %v, want 0600", got)
	}
	noTemps(t, dir)
}

func TestWriteKeepsOwner(t *testing.T) {
	testenv.Root(t, "chown to another user")
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(p, 4321, 4322); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(p)
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 4321 || st.Gid != 4322 {
		t.Errorf("owner %d:%d, want 4321:4322", st.Uid, st.Gid)
	}
}

func TestWriteLikeCopiesMode(t *testing.T) {
	dir := t.TempDir()
	like := filepath.Join(dir, "orig")
	if err := os.WriteFile(like, []byte("x"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(like, 0o640); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "copy")
	err := WriteLike(p, like, func(w io.Writer) error {
		_, err := io.WriteString(w, "streamed")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := mode(t, p); got != 0o640 {
		t.Errorf("mode %v, want 0640 (the reference file's)", got)
	}
	b, _ := os.ReadFile(p)
	if string(b) != "streamed" {
		t.Errorf("content %q", b)
	}
	if err := WriteLike(p, filepath.Join(dir, "missing"), func(io.Writer) error { return nil }); err == nil {
		t.Error("WriteLike with a missing reference file succeeded")
	}
	noTemps(t, dir)
}

func TestWriteFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	link := filepath.Join(dir, "link")
	if err := os.WriteFile(real, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	if err := Write(link, []byte("new"), 0o644); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&fs.ModeSymlink == 0 {
		t.Error("the symlink was replaced by a file")
	}
	if b, _ := os.ReadFile(real); string(b) != "new" {
		t.Errorf("link target content %q, want new", b)
	}
}

func TestErrorLeavesTargetAndNoTemp(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFunc(p, 0o644, func(w io.Writer) error {
		_, _ = io.WriteString(w, "half")
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v, want the writer's error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("target changed to %q on error", b)
	}
	noTemps(t, dir)

	// The rename fails: the target is a non-empty directory.
	sub := filepath.Join(dir, "sub")
	if err := os.MkdirAll(filepath.Join(sub, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Write(sub, []byte("x"), 0o644); err == nil {
		t.Fatal("replacing a non-empty directory succeeded")
	}
	noTemps(t, dir)
}

func TestRemove(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Remove(p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file still there: %v", err)
	}
	if err := Remove(p); err != nil {
		t.Errorf("removing a missing file: %v", err)
	}
}
