package validate_test

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/redirect"
	"github.com/kagenti/authbridge-node/pkg/validate"
)

// childEnv makes a re-executed test binary run the validator (as another UID,
// in the pod netns) and print its verdict.
const childEnv = "AUTHBRIDGE_VALIDATE_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(child())
	}
	os.Exit(m.Run())
}

// child runs in the pod netns as a non-root UID. It first proves it holds no
// capability at all (CapEff 0), so a pass cannot come from privilege.
func child() int {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		fmt.Println("read status:", err)
		return 2
	}
	for _, l := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(l, "CapEff:") && strings.TrimSpace(strings.TrimPrefix(l, "CapEff:")) != "0000000000000000" {
			fmt.Println("validator child has capabilities:", l)
			return 2
		}
	}
	// The default 3 s timeout: a first SYN lost under load is retransmitted
	// after 1 s, which a shorter bound would report as "not redirected".
	o := validate.Options{}
	for _, s := range strings.Fields(os.Getenv(childEnv + "_TARGETS")) {
		o.Targets = append(o.Targets, netip.MustParseAddrPort(s))
	}
	for _, s := range strings.Fields(os.Getenv(childEnv + "_UDP")) {
		o.UDPTargets = append(o.UDPTargets, netip.MustParseAddrPort(s))
	}
	if err := validate.Run(context.Background(), o); err != nil {
		fmt.Println("FAIL", err)
		return 1
	}
	fmt.Println("PASS")
	return 0
}

// runValidator runs the validator as uid in the pod netns; it returns the
// verdict line and whether the process exited 0.
func runValidator(t *testing.T, pod ns.NetNS, uid uint32, targets, udp []netip.AddrPort) (string, bool) {
	t.Helper()
	join := func(as []netip.AddrPort) string {
		var ss []string
		for _, a := range as {
			ss = append(ss, a.String())
		}
		return strings.Join(ss, " ")
	}
	var out bytes.Buffer
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1", childEnv+"_TARGETS="+join(targets), childEnv+"_UDP="+join(udp))
	cmd.Stdout, cmd.Stderr, cmd.Dir = &out, &out, "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: uid}}
	err := pod.Do(func(ns.NetNS) error { return cmd.Run() })
	line := strings.TrimSpace(out.String())
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("run validator: %v: %s", err, line)
	}
	if cmd.ProcessState.ExitCode() == 2 {
		t.Fatalf("validator child could not run the check: %s", line)
	}
	return line, cmd.ProcessState.ExitCode() == 0
}

// TestValidatorRealRules runs the validator as UID 1000 with no capabilities
// in a pod netns with a default route, on every backend: without rules it
// fails naming the missing redirect; with the rules it passes (TCP arrived
// at its own listener on 8082 with SO_ORIGINAL_DST intact, UDP dropped);
// rules that redirect but let UDP out fail the UDP check.
func TestValidatorRealRules(t *testing.T) {
	testenv.Root(t, "network namespaces, netfilter")
	targets := []netip.AddrPort{validate.DefaultTargetV4, validate.DefaultTargetV6}
	for _, name := range redirect.AllBackends {
		t.Run(name, func(t *testing.T) {
			b, err := redirect.New(name)
			if err != nil {
				t.Fatal(err)
			}
			tp := redirecttest.NewTopology(t)
			if err := tp.Do(func() error { return defaultRoutes() }); err != nil {
				t.Fatal(err)
			}

			line, ok := runValidator(t, tp.Pod, 1000, targets, targets)
			if ok || !strings.Contains(line, "egress not redirected: TCP to 192.0.2.1:9") {
				t.Fatalf("without rules: validator said %q (exit 0: %v), want a failure naming the unredirected TCP", line, ok)
			}
			t.Logf("without rules: %s", line)
			// The unanswered SYNs above left conntrack entries; the kernel
			// often picks the same source port for the next connect to the
			// same destination, and a SYN matching an existing entry is not
			// NATed again. A real pod has its rules before its first packet,
			// so start the with-rules checks from an empty table.
			if err := tp.Do(func() error { return netlink.ConntrackTableFlush(netlink.ConntrackTable) }); err != nil {
				t.Fatalf("flush conntrack in the pod netns: %v", err)
			}

			spec := redirect.DefaultSpec(redirect.IPv4, redirect.IPv6)
			if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
				t.Fatal(err)
			}
			if line, ok := runValidator(t, tp.Pod, 1000, targets, targets); !ok || line != "PASS" {
				t.Fatalf("with %s rules: validator said %q, want PASS", name, line)
			}
			// As the proxy UID the check would prove nothing: refused.
			if line, ok := runValidator(t, tp.Pod, redirect.DefaultProxyUID, targets, nil); ok || !strings.Contains(line, "proxy UID 1337") {
				t.Fatalf("as the proxy UID: validator said %q, want a refusal", line)
			}

			// A destination the rules leave alone (an excluded CIDR) fails
			// both checks: TCP goes direct, UDP leaves the pod.
			weak := spec
			weak.ExcludeOutboundCIDRs = []netip.Prefix{netip.MustParsePrefix("192.0.2.2/32")}
			if err := tp.Do(func() error { return b.Apply(weak) }); err != nil {
				t.Fatal(err)
			}
			excluded := []netip.AddrPort{netip.MustParseAddrPort("192.0.2.2:9")}
			if line, ok := runValidator(t, tp.Pod, 1000, excluded, nil); ok || !strings.Contains(line, "egress not redirected: TCP to 192.0.2.2:9") {
				t.Fatalf("TCP to an excluded CIDR: validator said %q, want a failure", line)
			}
			if line, ok := runValidator(t, tp.Pod, 1000, targets[:1], excluded); ok || !strings.Contains(line, "UDP to 192.0.2.2:9 left the pod") {
				t.Fatalf("UDP to an excluded CIDR: validator said %q, want the UDP failure", line)
			}
		})
	}
}

// defaultRoutes points both families' default routes at the peer, as a pod
// has them, so the documentation addresses are routable (and unanswered).
func defaultRoutes() error {
	l, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	for _, gw := range []netip.Addr{redirecttest.PeerV4, redirecttest.PeerV6} {
		r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw.AsSlice()}
		if err := netlink.RouteAdd(r); err != nil {
			return fmt.Errorf("default route via %s: %w", gw, err)
		}
	}
	return nil
}

// TestRefusesProxyUID needs no privilege: the UID check comes first.
func TestValidatorRefusesProxyUID(t *testing.T) {
	o := validate.Options{}
	err := validate.RunAs(context.Background(), o, int(redirect.DefaultProxyUID))
	if err == nil || !strings.Contains(err.Error(), "runs as the proxy UID 1337") {
		t.Fatalf("err = %v, want the proxy-UID refusal", err)
	}
}
