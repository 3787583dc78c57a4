// Package validate is the in-pod check that the egress redirect really works,
// run as an unprivileged init container before the AuthBridge sidecar starts
// (`node-agent validate`). It plays the proxy for a moment: it listens on the
// proxy's transparent port on loopback, connects as an ordinary UID to an
// address nothing answers directly, and passes only if that connection
// arrived at its own listener with the original destination intact
// (SO_ORIGINAL_DST). Optionally it also checks that a UDP datagram to a
// non-resolver is dropped. Any other outcome is an error whose one-line text
// is meant for the pod's termination message.
//
// It needs no capability: listening on a port above 1024, connecting and
// reading SO_ORIGINAL_DST of an accepted socket are unprivileged. It must not
// run as the proxy UID, whose traffic the rules let go direct on purpose.
package validate

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// Defaults: TEST-NET-1 / the IPv6 documentation prefix (RFC 5737, RFC 3849)
// are never routed on the internet, so a connection there can only complete
// through the redirect; port 9 is discard.
var (
	DefaultTargetV4 = netip.MustParseAddrPort("192.0.2.1:9")
	DefaultTargetV6 = netip.MustParseAddrPort("[2001:db8::1]:9")
)

// Options say what to check. Zero values take the defaults of the rules
// (redirect.DefaultSpec): port 8082, proxy UID 1337.
type Options struct {
	// OutboundPort is the proxy's transparent listener the rules redirect to.
	OutboundPort uint16
	// ProxyUID is the UID whose traffic goes direct; the check refuses to
	// run under it, since its connection would prove nothing.
	ProxyUID uint32
	// Targets are dialled in turn; each must arrive redirected. One per
	// family the pod should have rules for.
	Targets []netip.AddrPort
	// UDPTargets each get one datagram that must be dropped (EPERM from the
	// netfilter DROP in OUTPUT). Empty: no UDP check.
	UDPTargets []netip.AddrPort
	// Timeout bounds each connection attempt (default 3 s).
	Timeout time.Duration
}

func (o *Options) defaults() {
	spec := redirect.DefaultSpec()
	if o.OutboundPort == 0 {
		o.OutboundPort = spec.OutboundPort
	}
	if o.ProxyUID == 0 {
		o.ProxyUID = spec.ProxyUID
	}
	if len(o.Targets) == 0 {
		o.Targets = []netip.AddrPort{DefaultTargetV4}
	}
	if o.Timeout == 0 {
		o.Timeout = 3 * time.Second
	}
}

// Run performs the checks and returns nil only if every target was redirected
// to the outbound port with its original destination and every UDP datagram
// was dropped. The error is one line, naming what failed and what it means.
func Run(ctx context.Context, o Options) error {
	return RunAs(ctx, o, syscall.Getuid())
}

// RunAs is Run for a process whose UID is uid (Run passes its own).
func RunAs(ctx context.Context, o Options, uid int) error {
	o.defaults()
	if uid == int(o.ProxyUID) {
		return fmt.Errorf("runs as the proxy UID %d, whose traffic the rules send direct: run the validator as any other UID", uid)
	}
	for _, t := range o.Targets {
		if err := checkTCP(ctx, t, o.OutboundPort, o.Timeout); err != nil {
			return err
		}
	}
	for _, t := range o.UDPTargets {
		if err := checkUDPDropped(t); err != nil {
			return err
		}
	}
	return nil
}

// checkTCP listens where the proxy would, dials target and requires the
// accepted connection to be ours with SO_ORIGINAL_DST = target.
func checkTCP(ctx context.Context, target netip.AddrPort, port uint16, timeout time.Duration) error {
	network, lo := "tcp4", "127.0.0.1"
	if target.Addr().Is6() {
		network, lo = "tcp6", "::1"
	}
	ln, err := net.Listen(network, net.JoinHostPort(lo, strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("cannot listen on %s port %d (is the proxy already running? the validator must run before it): %w", lo, port, err)
	}
	defer ln.Close()
	accepted := make(chan *net.TCPConn, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			accepted <- c.(*net.TCPConn)
		}
		close(accepted)
	}()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", target.String())
	if err != nil {
		return fmt.Errorf("egress not redirected: TCP to %s did not reach the redirect listener on port %d (%v): no AuthBridge rules in this pod's network namespace", target, port, errors.Unwrap(err))
	}
	defer conn.Close()
	var c *net.TCPConn
	select {
	case c = <-accepted:
	case <-ctx.Done():
	}
	if c == nil {
		return fmt.Errorf("egress not redirected: TCP to %s connected to something other than the redirect listener on port %d", target, port)
	}
	defer c.Close()
	if c.RemoteAddr().String() != conn.LocalAddr().String() {
		return fmt.Errorf("egress not redirected: the listener on port %d accepted %v, not this connection from %v", port, c.RemoteAddr(), conn.LocalAddr())
	}
	od, err := redirect.OriginalDst(c)
	if err != nil {
		return fmt.Errorf("egress redirected but the original destination is unreadable: %w", err)
	}
	if od != target {
		return fmt.Errorf("egress redirected but the original destination is %s, want %s", od, target)
	}
	return nil
}

// checkUDPDropped sends one datagram; the rules' DROP in the OUTPUT hook
// makes the send itself fail with EPERM, so no answer has to be awaited.
func checkUDPDropped(target netip.AddrPort) error {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(target))
	if err != nil {
		return fmt.Errorf("UDP check: cannot open a socket to %s: %w", target, err)
	}
	defer c.Close()
	_, err = c.Write([]byte("authbridge-validate"))
	switch {
	case errors.Is(err, syscall.EPERM):
		return nil
	case err == nil:
		return fmt.Errorf("egress not enforced: UDP to %s left the pod (not dropped): no AuthBridge rules for non-TCP traffic", target)
	default:
		return fmt.Errorf("UDP check: send to %s failed with %v, not the EPERM of a netfilter drop", target, err)
	}
}
