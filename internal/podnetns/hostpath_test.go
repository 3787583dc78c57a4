package podnetns

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHostPath: a host tree with /var/run -> /run (absolute, as on most
// hosts) and a relative link resolves inside the host root, never in the
// agent's own /; ".." cannot climb above it; a loop is refused.
func TestHostPath(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"run/netns", "var", "opt/a"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "run/netns/cni-1"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	mustLink := func(target, at string) {
		if err := os.Symlink(target, filepath.Join(root, at)); err != nil {
			t.Fatal(err)
		}
	}
	mustLink("/run", "var/run")
	mustLink("../../run", "opt/a/rel")
	mustLink("/loop2", "loop1")
	mustLink("/loop1", "loop2")
	for in, want := range map[string]string{
		"/var/run/netns/cni-1":   filepath.Join(root, "run/netns/cni-1"),
		"/opt/a/rel/netns/cni-1": filepath.Join(root, "run/netns/cni-1"),
		"/../../run/netns/cni-1": filepath.Join(root, "run/netns/cni-1"),
	} {
		got, err := HostPath(root, in)
		if err != nil || got != want {
			t.Errorf("HostPath(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := HostPath(root, "/loop1/x"); err == nil || !strings.Contains(err.Error(), "too many symlinks") {
		t.Errorf("loop: err = %v", err)
	}
	if _, err := HostPath(root, "/var/run/netns/absent"); err == nil {
		t.Error("absent path: no error")
	}
	if got, _ := HostPath("", "/var/run/x"); got != "/var/run/x" {
		t.Errorf("no host root: %q", got)
	}
}
