// Package capability finds out which redirect backends really work on this
// node: it programs each backend into a throw-away network namespace and
// sends a real TCP connection through the rules. A backend works only if the
// connection arrives at the redirect listener and SO_ORIGINAL_DST names the
// address that was dialled. Tables are never inspected to judge: a kernel
// can accept rules it cannot execute (missing nat/owner modules, an
// iptables-nft binary newer than the kernel's nf_tables, ...).
package capability

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// ForceFailEnv is a test knob for the end-to-end tests: a comma-separated list
// of backend names (or "all") that Probe reports as failed without probing,
// with the error ForcedFailureMessage. It lets the e2e exercise the fallback
// to the next backend and the "no working backend" path on a kernel where
// everything works. Never set it in production.
const ForceFailEnv = "AUTHBRIDGE_PROBE_FORCE_FAIL"

// ForcedFailureMessage is the Error of a backend failed by ForceFailEnv.
const ForcedFailureMessage = "forced by " + ForceFailEnv + " (test knob)"

// DefaultTimeout bounds one backend's probe.
const DefaultTimeout = 5 * time.Second

// Addresses the probe dials: documentation ranges (TEST-NET-3, RFC 5737, and
// 2001:db8::/32, RFC 3849) routed onto a veth inside the throw-away netns, so
// nothing but the redirect can make the connection succeed.
var (
	probeDstV4 = netip.MustParseAddrPort("203.0.113.1:80")
	probeDstV6 = netip.MustParseAddrPort("[2001:db8::1]:80")
	probeSrcV4 = netip.MustParsePrefix("203.0.113.2/24")
	probeSrcV6 = netip.MustParsePrefix("2001:db8::2/64")
)

// Options tune Probe; the zero value probes IPv4 with DefaultTimeout.
type Options struct {
	// Timeout bounds each backend's probe (default DefaultTimeout).
	Timeout time.Duration
	// Families to probe (default IPv4 only). A backend works only if every
	// family works.
	Families []redirect.Family
	// Getenv reads ForceFailEnv (default os.Getenv); tests set their own.
	Getenv func(string) string

	// observeNetNS, when set, gets the inode of each throw-away netns (tests).
	observeNetNS func(inode uint64)
	// newBackend replaces redirect.New (tests: backends that break the rules).
	newBackend func(string) (redirect.Backend, error)
}

// Probe probes each named backend in order and reports one result per name.
// It must run as root (or with CAP_NET_ADMIN and CAP_SYS_ADMIN) and not as
// the proxy UID, whose traffic the rules deliberately let through.
func Probe(ctx context.Context, backends []string, opts Options) []nodestate.BackendResult {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if len(opts.Families) == 0 {
		opts.Families = []redirect.Family{redirect.IPv4}
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	forced := forcedSet(opts.Getenv(ForceFailEnv))
	out := make([]nodestate.BackendResult, 0, len(backends))
	for _, name := range backends {
		start := time.Now()
		var err error
		if forced["all"] || forced[name] {
			err = errors.New(ForcedFailureMessage)
		} else {
			err = probeOne(ctx, name, opts)
		}
		r := nodestate.BackendResult{Backend: name, Works: err == nil, Duration: time.Since(start)}
		if err != nil {
			r.Error = err.Error()
		}
		out = append(out, r)
	}
	return out
}

func forcedSet(v string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

func probeOne(ctx context.Context, name string, opts Options) error {
	newBackend := redirect.New
	if opts.newBackend != nil {
		newBackend = opts.newBackend
	}
	b, err := newBackend(name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("probe not run: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	// An anonymous netns: the kernel frees it when the last reference (this
	// handle, the sockets below) is closed, so even a crash mid-probe cannot
	// leave a namespace or a /run/netns mount behind.
	netns, err := ns.TempNetNS()
	if err != nil {
		return fmt.Errorf("create throw-away netns: %w", err)
	}
	defer netns.Close()
	if opts.observeNetNS != nil {
		var st unix.Stat_t
		if unix.Fstat(int(netns.Fd()), &st) == nil {
			opts.observeNetNS(st.Ino)
		}
	}

	spec := redirect.DefaultSpec(opts.Families...)
	return netns.Do(func(ns.NetNS) error {
		if err := setupNetNS(opts.Families); err != nil {
			return err
		}
		if err := b.Apply(spec); err != nil {
			return fmt.Errorf("program rules: %w", err)
		}
		defer b.Remove() // the netns goes away anyway; this keeps the binaries' state tidy
		for _, f := range opts.Families {
			dst := probeDstV4
			if f == redirect.IPv6 {
				dst = probeDstV6
			}
			if err := roundTrip(ctx, f, dst, spec.OutboundPort); err != nil {
				return fmt.Errorf("%s: %w", f, err)
			}
		}
		return nil
	})
}

// setupNetNS brings lo up and routes the probe destinations onto a veth pair
// inside the netns (both ends here; the peer answers nothing), so connect()
// finds a route and only the redirect can complete the handshake.
func setupNetNS(fams []redirect.Family) error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "abprobe0"}, PeerName: "abprobe1"}
	if err := netlink.LinkAdd(v); err != nil {
		return fmt.Errorf("add veth: %w", err)
	}
	for _, n := range []string{"abprobe0", "abprobe1"} {
		l, err := netlink.LinkByName(n)
		if err != nil {
			return fmt.Errorf("find %s: %w", n, err)
		}
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("set %s up: %w", n, err)
		}
		if n != "abprobe0" {
			continue
		}
		for _, f := range fams {
			p, flags := probeSrcV4, 0
			if f == redirect.IPv6 {
				p, flags = probeSrcV6, unix.IFA_F_NODAD
			}
			a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, Flags: flags}
			if err := netlink.AddrAdd(l, a); err != nil {
				return fmt.Errorf("add %s: %w", p, err)
			}
		}
	}
	return nil
}

// roundTrip listens on the loopback redirect port, dials dst (this process
// is not the proxy UID, so the rules must redirect it) and checks that the
// connection arrives with dst as its original destination. It runs on the
// thread that is inside the probe netns.
func roundTrip(ctx context.Context, f redirect.Family, dst netip.AddrPort, port uint16) error {
	network, laddr := "tcp4", "127.0.0.1"
	if f == redirect.IPv6 {
		network, laddr = "tcp6", "::1"
	}
	ln, err := net.Listen(network, net.JoinHostPort(laddr, strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("listen on the redirect port: %w", err)
	}
	defer ln.Close()

	type accepted struct {
		c   *net.TCPConn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- accepted{err: err}
			return
		}
		ch <- accepted{c: c.(*net.TCPConn)}
	}()

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", dst.String())
	if err != nil {
		return fmt.Errorf("connection to %s not redirected: %w", dst, err)
	}
	defer conn.Close()
	var a accepted
	select {
	case a = <-ch:
	case <-ctx.Done():
		return fmt.Errorf("connection to %s established but never reached the redirect listener: %w", dst, ctx.Err())
	}
	if a.err != nil {
		return fmt.Errorf("accept on the redirect listener: %w", a.err)
	}
	defer a.c.Close()
	if a.c.RemoteAddr().String() != conn.LocalAddr().String() {
		return fmt.Errorf("redirect listener accepted %v, not the probe's connection from %v", a.c.RemoteAddr(), conn.LocalAddr())
	}
	od, err := redirect.OriginalDst(a.c)
	if err != nil {
		return err
	}
	if od != dst {
		return fmt.Errorf("SO_ORIGINAL_DST is %s, want the dialled %s", od, dst)
	}
	return nil
}
