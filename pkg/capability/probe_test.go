package capability

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func noEnv(string) string { return "" }

// These tests run on the real kernel of the test host, which has nf_tables,
// the iptables nat/filter/owner/mark matches and ip6 NAT built in; every
// backend must therefore really work here.
func TestProbeAllBackendsWork(t *testing.T) {
	testenv.Root(t, "network namespaces, netfilter")
	for name, fams := range map[string][]redirect.Family{
		"ipv4":       nil,
		"dual-stack": {redirect.IPv4, redirect.IPv6},
	} {
		t.Run(name, func(t *testing.T) {
			before := netnsState(t)
			var inodes []uint64
			res := Probe(context.Background(), redirect.AllBackends, Options{
				Families:     fams,
				Getenv:       noEnv,
				observeNetNS: func(i uint64) { inodes = append(inodes, i) },
			})
			if len(res) != len(redirect.AllBackends) {
				t.Fatalf("got %d results, want %d", len(res), len(redirect.AllBackends))
			}
			for i, r := range res {
				if r.Backend != redirect.AllBackends[i] {
					t.Errorf("result %d is %q, want %q (input order)", i, r.Backend, redirect.AllBackends[i])
				}
				if !r.Works || r.Error != "" {
					t.Errorf("%s: works=%v error=%q, want works", r.Backend, r.Works, r.Error)
				}
				if r.Duration <= 0 {
					t.Errorf("%s: duration %v not recorded", r.Backend, r.Duration)
				}
				t.Logf("%s: %v", r.Backend, r.Duration)
			}
			if len(inodes) != len(redirect.AllBackends) {
				t.Fatalf("observed %d netns, want one per backend", len(inodes))
			}
			assertNoNetNSLeft(t, before, inodes)
		})
	}
}

func TestProbeForcedFailure(t *testing.T) {
	testenv.Root(t, "network namespaces, netfilter")
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == ForceFailEnv {
				return v
			}
			return ""
		}
	}
	res := Probe(context.Background(), redirect.AllBackends, Options{Getenv: env(" iptables-nft , iptables-legacy")})
	want := map[string]bool{redirect.BackendNFTables: true, redirect.BackendIPTablesNFT: false, redirect.BackendIPTablesLegacy: false}
	for _, r := range res {
		if r.Works != want[r.Backend] {
			t.Errorf("%s: works=%v, want %v (error %q)", r.Backend, r.Works, want[r.Backend], r.Error)
		}
		if !r.Works && r.Error != ForcedFailureMessage {
			t.Errorf("%s: error %q, want %q", r.Backend, r.Error, ForcedFailureMessage)
		}
	}
	res = Probe(context.Background(), redirect.AllBackends, Options{Getenv: env("all")})
	for _, r := range res {
		if r.Works || r.Error != "forced by AUTHBRIDGE_PROBE_FORCE_FAIL (test knob)" {
			t.Errorf("%s with all forced: works=%v error=%q", r.Backend, r.Works, r.Error)
		}
	}
}

func TestProbeUnknownBackend(t *testing.T) {
	res := Probe(context.Background(), []string{"ebpf"}, Options{Getenv: noEnv})
	if len(res) != 1 || res[0].Works {
		t.Fatalf("got %+v, want one failure", res)
	}
	for _, n := range redirect.AllBackends {
		if !strings.Contains(res[0].Error, n) {
			t.Errorf("error %q does not name allowed value %q", res[0].Error, n)
		}
	}
}

func TestProbeCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := Probe(ctx, []string{redirect.BackendNFTables}, Options{Getenv: noEnv})
	if res[0].Works || !strings.Contains(res[0].Error, "context canceled") {
		t.Errorf("cancelled probe: %+v", res[0])
	}
}

// netnsState is what a leaked netns would change: the named netns mounts
// and the netns of this process's threads.
type nsSnapshot struct {
	named   string
	threads map[string]bool
}

func netnsState(t *testing.T) nsSnapshot {
	t.Helper()
	entries, _ := os.ReadDir("/run/netns")
	var names []string
	for _, e := range entries {
		// cnitest-*: named by containernetworking's testutils.NewNS in
		// other packages' tests, which go test may run at the same time;
		// the probe's namespaces are anonymous and could never be named so.
		if strings.HasPrefix(e.Name(), "cnitest-") {
			continue
		}
		names = append(names, e.Name())
	}
	return nsSnapshot{named: strings.Join(names, ","), threads: threadNetNS(t)}
}

func threadNetNS(t *testing.T) map[string]bool {
	t.Helper()
	tasks, err := filepath.Glob("/proc/self/task/*/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]bool{}
	for _, p := range tasks {
		if l, err := os.Readlink(p); err == nil {
			m[l] = true
		}
	}
	return m
}

func assertNoNetNSLeft(t *testing.T, before nsSnapshot, inodes []uint64) {
	t.Helper()
	after := netnsState(t)
	if after.named != before.named {
		t.Errorf("/run/netns changed: before %q, after %q", before.named, after.named)
	}
	for l := range after.threads {
		if !before.threads[l] {
			t.Errorf("a thread was left in netns %s", l)
		}
	}
	// No thread and no open file of this process refers to a probe netns.
	fds, _ := filepath.Glob("/proc/self/fd/*")
	var links []string
	for _, p := range fds {
		if l, err := os.Readlink(p); err == nil {
			links = append(links, l)
		}
	}
	for l := range after.threads {
		links = append(links, l)
	}
	for _, ino := range inodes {
		ref := fmt.Sprintf("net:[%d]", ino)
		for _, l := range links {
			if l == ref {
				t.Errorf("probe netns %s still referenced after Probe", ref)
			}
		}
	}
}

// BenchmarkApply programs and removes the default IPv4 rules in a
// throw-away netns, per backend; next to BenchmarkProbe it shows how much of
// a probe is rule programming.
func BenchmarkApply(b *testing.B) {
	for _, name := range redirect.AllBackends {
		b.Run(name, func(b *testing.B) {
			be, err := redirect.New(name)
			if err != nil {
				b.Fatal(err)
			}
			netns, err := ns.TempNetNS()
			if err != nil {
				b.Fatal(err)
			}
			defer netns.Close()
			spec := redirect.DefaultSpec() // IPv4, as the probe's default
			for b.Loop() {
				err := netns.Do(func(ns.NetNS) error {
					if err := be.Apply(spec); err != nil {
						return err
					}
					return be.Remove()
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkProbe(b *testing.B) {
	for _, name := range redirect.AllBackends {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				r := Probe(context.Background(), []string{name}, Options{Getenv: noEnv, Timeout: 10 * time.Second})
				if !r[0].Works {
					b.Fatal(r[0].Error)
				}
			}
		})
	}
}

// brokenBackend programs real nftables rules that do not do the job, to show
// the probe judges by traffic: a backend whose Apply succeeds but whose rules
// do not redirect (or redirect elsewhere) must be reported as not working.
type brokenBackend struct {
	redirect.Backend
	mutate func(*redirect.Spec)
}

func (b brokenBackend) Apply(s redirect.Spec) error {
	b.mutate(&s)
	return b.Backend.Apply(s)
}

func TestProbeJudgesByTraffic(t *testing.T) {
	testenv.Root(t, "network namespaces, netfilter")
	cases := map[string]struct {
		mutate func(*redirect.Spec)
		want   string
	}{
		// Real rules, but port 80 is exempt: the dial goes to the dead veth.
		"not redirected": {func(s *redirect.Spec) { s.ProxyUID = uint32(os.Getuid()) + 1; s.ExcludeOutboundPorts = []uint16{80} }, "not redirected"},
		// Redirected to a port with no listener: refused.
		"wrong port": {func(s *redirect.Spec) { s.OutboundPort = 9 }, "connection refused"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			res := Probe(context.Background(), []string{redirect.BackendNFTables}, Options{
				Getenv:  noEnv,
				Timeout: 500 * time.Millisecond,
				newBackend: func(n string) (redirect.Backend, error) {
					b, err := redirect.New(n)
					return brokenBackend{b, c.mutate}, err
				},
			})
			if res[0].Works {
				t.Fatalf("probe reported a broken backend as working")
			}
			if !strings.Contains(res[0].Error, c.want) {
				t.Errorf("error %q, want it to mention %q", res[0].Error, c.want)
			}
			t.Logf("%s: %s", name, res[0].Error)
		})
	}
}
