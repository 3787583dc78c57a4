package cli

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/capability"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// TestMain lets this test binary stand in for node-agent when the in-process
// `probe` command re-executes /proc/self/exe as `probe --raw` (HostProbe):
// go test never passes a bare "probe" as the first argument. Any other
// re-execution as the probe child is refused, never a second test run.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		os.Exit(Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
	}
	if os.Getenv(capability.HostProbeChildEnv) != "" {
		fmt.Fprintln(os.Stderr, "test binary started as the host probe child without the probe command")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// nodeAgent builds the real, static node-agent binary once (as make build
// and the image do: CGO_ENABLED=0), so it runs in a root without libraries.
var nodeAgent = sync.OnceValues(func() ([]byte, error) {
	out := filepath.Join(os.TempDir(), fmt.Sprintf("node-agent-test-%d", os.Getpid()))
	defer os.Remove(out)
	cmd := exec.Command("go", "build", "-o", out, "github.com/kagenti/authbridge-node/cmd/node-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build node-agent: %v: %s", err, b)
	}
	return os.ReadFile(out)
})

// hostRoot builds a directory that looks like a host's / to a chroot: the
// given real directories bind-mounted in, Debian's merged-usr symlinks, and
// the static node-agent binary at /node-agent (a path that exists inside it).
func hostRoot(t *testing.T, binds ...string) string {
	t.Helper()
	root := t.TempDir()
	// An empty /proc, as the host's procfs looks to a process of another PID
	// namespace (the agent's): the probe child must mount its own.
	if err := os.Mkdir(filepath.Join(root, "proc"), 0o555); err != nil {
		t.Fatal(err)
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		if err := os.Symlink("usr/"+l, filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range binds {
		dst := filepath.Join(root, d)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(d, dst, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			t.Fatalf("bind %s: %v", d, err)
		}
		// The copy receives the host's mount events but sends none back:
		// with the host's shared propagation, detaching the copy of /run
		// would also unmount the host's /run/netns/* namespaces, which
		// other packages' tests use at the same time under go test ./...
		// (seen as "unknown FS magic" in internal/cni's TestParallelAdds).
		if err := unix.Mount("", dst, "", unix.MS_REC|unix.MS_SLAVE, ""); err != nil {
			_ = unix.Unmount(dst, unix.MNT_DETACH)
			t.Fatalf("make the bind of %s a slave: %v", d, err)
		}
		t.Cleanup(func() { _ = unix.Unmount(dst, unix.MNT_DETACH) })
	}
	bin, err := nodeAgent()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "node-agent"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	return root
}

func failingFallback(t *testing.T) capability.ProbeFunc {
	return func(context.Context, []string, []redirect.Family) []nodestate.BackendResult {
		t.Error("fallback used: the probe did not run in the host root")
		return nil
	}
}

// The probe runs with the host root's binaries: with the host's /usr all
// three backends are proven by a real packet; in a root without /usr (a host
// without iptables) only nftables (netlink, no binary) works and the
// iptables backends fail with the exec error. A root the probe cannot run
// in at all falls back, as documented.
func TestHostProbeUsesHostRootBinaries(t *testing.T) {
	testenv.Root(t, "chroot, network namespaces")
	ctx := context.Background()
	fams := []redirect.Family{redirect.IPv4, redirect.IPv6}

	full := capability.HostProbe{Exe: "/node-agent", HostRoot: hostRoot(t, "/usr", "/dev", "/run"), Fallback: failingFallback(t)}
	for _, r := range full.Func()(ctx, redirect.AllBackends, fams) {
		if !r.Works {
			t.Errorf("host root with /usr: %s fails: %s", r.Backend, r.Error)
		}
	}

	bare := capability.HostProbe{Exe: "/node-agent", HostRoot: hostRoot(t, "/dev", "/run"), Fallback: failingFallback(t)}
	res := bare.Func()(ctx, redirect.AllBackends, fams)
	for _, r := range res {
		switch {
		case r.Backend == redirect.BackendNFTables && !r.Works:
			t.Errorf("host root without binaries: nftables needs none but fails: %s", r.Error)
		case r.Backend != redirect.BackendNFTables && (r.Works || !strings.Contains(r.Error, "executable file not found")):
			t.Errorf("host root without binaries: %s works=%v err=%q, want the missing-binary error", r.Backend, r.Works, r.Error)
		}
	}

	fellBack := false
	noProc := capability.HostProbe{Exe: "/node-agent", HostRoot: t.TempDir(), Logger: discardLogger(),
		Fallback: func(context.Context, []string, []redirect.Family) []nodestate.BackendResult {
			fellBack = true
			return nil
		}}
	if _, err := noProc.Run(ctx, redirect.AllBackends, fams); err == nil {
		t.Errorf("a root without the agent binary cannot run the probe, yet Run succeeded")
	}
	noProc.Func()(ctx, redirect.AllBackends, fams)
	if !fellBack {
		t.Errorf("the fallback was not used when the probe could not run in the host root")
	}
}

func TestProbeRawRefusesBadInput(t *testing.T) {
	if code, _, errs := runMain("probe", "--raw"); code != 2 || !strings.Contains(errs, "--backends") {
		t.Errorf("probe --raw without backends: %d %q", code, errs)
	}
	if code, _, errs := runMain("probe", "--raw", "--backends", "nftables", "--families", "ipv5"); code != 2 || !strings.Contains(errs, `"ipv5"`) {
		t.Errorf("probe --raw bad family: %d %q", code, errs)
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
