package redirect

import (
	"bytes"
	"fmt"
	"net/netip"
	"os/exec"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// BenchmarkRuleProgramming compares, side by side in one run and in one
// throw-away netns, the three ways to program a pod's rules (issue 2,
// "Benchmark"): nftables over netlink (one batch), iptables-restore (the
// iptables-legacy backend), and one iptables exec per rule, the way the old
// proxy-init init container does it. All three program the same default
// Spec (IPv4, one resolver). Only the programming is timed; the rules are
// removed outside the timer after every iteration so each one starts empty.
//
// Reported per method: p50-ms and p99-ms of the per-iteration durations, and
// for the two iptables methods x-slower-than-netlink (their p50 / netlink's
// p50, measured in the same run).
func BenchmarkRuleProgramming(b *testing.B) {
	pod, err := ns.TempNetNS()
	if err != nil {
		b.Fatalf("create netns: %v", err)
	}
	defer pod.Close()
	spec := DefaultSpec(IPv4)
	spec.Resolvers = []netip.Addr{netip.MustParseAddr("10.96.0.10")}

	nft := &nftBackend{}
	legacy := newIPTablesBackend(BackendIPTablesLegacy, "legacy")
	perRule := &perRuleExec{bin: "iptables-legacy"}
	p50 := map[string]float64{}

	methods := []struct {
		name   string
		apply  func() error
		remove func() error
	}{
		{"nftables-netlink", func() error { return nft.Apply(spec) }, nft.Remove},
		{"iptables-restore", func() error { return legacy.Apply(spec) }, legacy.Remove},
		{"iptables-per-rule-exec", func() error { return perRule.apply(spec) }, legacy.Remove},
	}
	for _, m := range methods {
		b.Run(m.name, func(b *testing.B) {
			durs := make([]time.Duration, 0, b.N)
			err := pod.Do(func(ns.NetNS) error {
				if err := m.remove(); err != nil {
					return err
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					start := time.Now()
					if err := m.apply(); err != nil {
						return fmt.Errorf("iteration %d: %w", i, err)
					}
					durs = append(durs, time.Since(start))
					b.StopTimer()
					if err := m.remove(); err != nil {
						return fmt.Errorf("remove after iteration %d: %w", i, err)
					}
					b.StartTimer()
				}
				b.StopTimer()
				return nil
			})
			if err != nil {
				b.Fatal(err)
			}
			sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
			ms := func(q float64) float64 {
				return float64(durs[int(q*float64(len(durs)-1))].Microseconds()) / 1000
			}
			b.ReportMetric(ms(0.50), "p50-ms")
			b.ReportMetric(ms(0.99), "p99-ms")
			p50[m.name] = ms(0.50)
			if base := p50["nftables-netlink"]; m.name != "nftables-netlink" && base > 0 {
				b.ReportMetric(ms(0.50)/base, "x-slower-than-netlink")
			}
		})
	}
}

// perRuleExec is a model of the old proxy-init: one iptables process per
// chain creation, per rule and per jump, rendering exactly the rules the
// iptables backend renders (so the comparison is rule for rule).
type perRuleExec struct{ bin string }

func (p *perRuleExec) apply(s Spec) error {
	for _, cr := range render(s, IPv4) {
		table := tableOf(cr.kind)
		if err := p.run("-t", table, "-N", cr.name); err != nil {
			return err
		}
		for _, r := range cr.rules {
			if err := p.run(append([]string{"-t", table}, strings.Fields(iptRule(cr.name, IPv4, r))...)...); err != nil {
				return err
			}
		}
	}
	for _, h := range iptHooks {
		if h.chain == ChainInbound && !s.InboundEnabled {
			continue
		}
		if err := p.run("-t", h.table, "-I", h.from, "1", "-j", h.chain); err != nil {
			return err
		}
	}
	return nil
}

func (p *perRuleExec) run(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(p.bin, append([]string{fmt.Sprintf("--wait=%d", xtablesWaitSeconds)}, args...)...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %v: %s", p.bin, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// BenchmarkVerify measures what the node agent's drift check costs per pod
// and pass (issue 10): one Backend.Verify of a programmed dual-stack spec
// in one netns, per backend, side by side. Reported: us-per-verify (the
// mean) and x-vs-nftables (its ratio to the nftables mean of the same run),
// and us-per-pass-at-110-pods: 110 of them one after the other, the cost
// of one verify pass on a full node (the kubelet's default maxPods), and
// cpu-us-per-verify: the process's CPU time (user+system, getrusage) per
// verify: the wall time includes waiting for the kernel's netlink answers
// and for iptables-save to exit, which costs the node no CPU.
func BenchmarkVerify(b *testing.B) {
	pod, err := ns.TempNetNS()
	if err != nil {
		b.Fatalf("create netns: %v", err)
	}
	defer pod.Close()
	spec := DefaultSpec(IPv4, IPv6)
	spec.Resolvers = []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00::a")}
	mean := map[string]float64{}
	for _, name := range AllBackends {
		b.Run(name, func(b *testing.B) {
			be, err := New(name)
			if err != nil {
				b.Fatal(err)
			}
			err = pod.Do(func(ns.NetNS) error {
				for _, other := range AllBackends { // one backend's rules at a time
					o, _ := New(other)
					if err := o.Remove(); err != nil {
						return err
					}
				}
				if err := be.Apply(spec); err != nil {
					return err
				}
				b.ResetTimer()
				cpu0 := cpuTime(unix.RUSAGE_SELF) + cpuTime(unix.RUSAGE_CHILDREN)
				start := time.Now()
				for i := 0; i < b.N; i++ {
					if err := be.Verify(spec); err != nil {
						return fmt.Errorf("iteration %d: %w", i, err)
					}
				}
				us := float64(time.Since(start).Microseconds()) / float64(b.N)
				cpu := cpuTime(unix.RUSAGE_SELF) + cpuTime(unix.RUSAGE_CHILDREN) - cpu0
				b.StopTimer()
				b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-us-per-verify")
				mean[name] = us
				b.ReportMetric(us, "us-per-verify")
				b.ReportMetric(us*110, "us-per-pass-at-110-pods")
				if base := mean[BackendNFTables]; name != BackendNFTables && base > 0 {
					b.ReportMetric(us/base, "x-vs-nftables")
				}
				return be.Remove()
			})
			if err != nil {
				b.Fatal(err)
			}
		})
	}
}

// cpuTime is the user+system CPU time of who (RUSAGE_SELF, or
// RUSAGE_CHILDREN: the iptables-save processes, once reaped).
func cpuTime(who int) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(who, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
