package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/kagenti/authbridge-node/pkg/redirect"
	"github.com/kagenti/authbridge-node/pkg/validate"
)

// validateCmd is `node-agent validate`: the in-pod check, run as an
// unprivileged init container before the sidecar (pkg/validate). A failure
// is one line on stderr and in the termination message, which
// `kubectl describe pod` shows; the exit code is 1.
func validateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("node-agent validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Uint("port", redirect.DefaultOutboundPort, "the proxy's transparent egress port the rules redirect to")
	proxyUID := fs.Uint("proxy-uid", redirect.DefaultProxyUID, "the proxy's UID (refused: its traffic goes direct)")
	targets := fs.String("targets", "", "comma-separated ip:port destinations that must arrive redirected (default "+validate.DefaultTargetV4.String()+", plus "+validate.DefaultTargetV6.String()+" when the pod has a global IPv6 address)")
	checkUDP := fs.Bool("check-udp", false, "also require a UDP datagram to each target address to be dropped")
	timeout := fs.Duration("timeout", 3*time.Second, "bound on each connection attempt")
	termLog := fs.String("termination-log", "/dev/termination-log", "where the failure line is also written (the pod's terminationMessagePath); empty: nowhere")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	o := validate.Options{OutboundPort: uint16(*port), ProxyUID: uint32(*proxyUID), Timeout: *timeout}
	if *port == 0 || *port > 65535 {
		fmt.Fprintf(stderr, "node-agent validate: --port %d: want 1-65535\n", *port)
		return 2
	}
	if *targets == "" {
		o.Targets = []netip.AddrPort{validate.DefaultTargetV4}
		if hasGlobalIPv6() {
			o.Targets = append(o.Targets, validate.DefaultTargetV6)
		}
	} else {
		for _, s := range strings.Split(*targets, ",") {
			ap, err := netip.ParseAddrPort(strings.TrimSpace(s))
			if err != nil {
				fmt.Fprintf(stderr, "node-agent validate: --targets: %q is not ip:port ([v6]:port for IPv6): %v\n", s, err)
				return 2
			}
			o.Targets = append(o.Targets, ap)
		}
	}
	if *checkUDP {
		o.UDPTargets = o.Targets
	}
	if err := validate.Run(ctx, o); err != nil {
		line := "authbridge validate: " + err.Error()
		fmt.Fprintln(stderr, line)
		if *termLog != "" {
			_ = os.WriteFile(*termLog, []byte(line+"\n"), 0o644) // best effort: the stderr line is the record
		}
		return 1
	}
	fmt.Fprintf(stdout, "authbridge validate: egress redirected to port %d for %v\n", *port, o.Targets)
	return 0
}

// hasGlobalIPv6 reports whether the pod has a global unicast IPv6 address,
// so the rules must redirect IPv6 too and a route for the check exists.
func hasGlobalIPv6() bool {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is6() && p.Addr().IsGlobalUnicast() && !p.Addr().Is4In6() {
			return true
		}
	}
	return false
}
