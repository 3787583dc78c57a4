package redirect_test

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// TestSocketLBRewriteBeforeOutput checks the claim behind the Cilium advice
// (docs/operations.md, Cilium): the rules accept DNS only to the resolvers
// (the cluster DNS service IP), and Cilium's socket load balancing, when it
// runs in the pod's netns, rewrites that service IP to a CoreDNS pod IP
// inside connect()/sendmsg(), before netfilter's OUTPUT sees a packet; so
// the pod's DNS over UDP is dropped and over TCP goes to the proxy. With
// socketLB.hostNamespaceOnly=true there is no rewrite in the pod: DNS to
// the service IP passes the rules (Cilium translates it after, at the
// host side of the veth, which is not modelled here).
//
// Stand-in: redirecttest.SocketLB attaches real cgroup/connect4 and
// cgroup/sendmsg4 BPF programs that rewrite the service IP (PeerAltV4:53)
// to the "CoreDNS pod" (PeerV4:53), the hooks Cilium's socket LB uses, to
// the client process's cgroup; the service lookup itself is not Cilium's.
func TestSocketLBRewriteBeforeOutput(t *testing.T) {
	root := testenv.Cgroup2Root(t)
	service := netip.AddrPortFrom(redirecttest.PeerAltV4, 53)
	corednsPod := netip.AddrPortFrom(redirecttest.PeerV4, 53)
	for _, name := range redirect.AllBackends {
		t.Run(name, func(t *testing.T) {
			b, err := redirect.New(name)
			if err != nil {
				t.Fatal(err)
			}
			tp := redirecttest.NewTopology(t)
			tp.ServePeer(t, 53, 53)
			tp.ServeRedirect(t, redirect.DefaultOutboundPort)
			lb := redirecttest.NewSocketLB(t, root, service, corednsPod)
			// The stand-in rewrites: without our rules, a query to the
			// service IP is answered by the pod IP.
			if got, err := answered(func() (string, error) {
				return redirecttest.RunHelperInCgroup(tp.Pod, otherUID, "udp", service.String(), lb.CgroupFD)
			}); err != nil || got != "udp "+corednsPod.String() {
				t.Fatalf("control, no rules: UDP to %s with socket LB: %q, %v; want the answer of %s", service, got, err, corednsPod)
			}
			spec := redirect.DefaultSpec(redirect.IPv4)
			spec.Resolvers = []netip.Addr{service.Addr()} // the cluster DNS service IP
			if err := tp.Do(func() error { return b.Apply(spec) }); err != nil {
				t.Fatalf("apply: %v", err)
			}
			// socketLB.hostNamespaceOnly=true: no rewrite in the pod.
			if got, err := answered(func() (string, error) { return tp.SendUDP(otherUID, service) }); err != nil || got != "udp "+service.String() {
				t.Fatalf("no socket LB in the pod: DNS/UDP to the service IP %s: %q, %v; want answered", service, got, err)
			}
			if got, err := tp.Dial(otherUID, service); err != nil || got != "direct "+service.String() {
				t.Fatalf("no socket LB in the pod: DNS/TCP to the service IP %s: %q, %v; want direct", service, got, err)
			}
			// Socket LB in the pod: the rules see the CoreDNS pod IP.
			got, err := redirecttest.RunHelperInCgroup(tp.Pod, otherUID, "udp", service.String(), lb.CgroupFD)
			if err == nil || !strings.Contains(err.Error(), "operation not permitted") {
				t.Fatalf("socket LB in the pod: DNS/UDP to %s (rewritten to %s): %q, %v; want dropped (EPERM) by %s", service, corednsPod, got, err, redirect.ChainNoTCP)
			}
			got, err = redirecttest.RunHelperInCgroup(tp.Pod, otherUID, "tcp", service.String(), lb.CgroupFD)
			if err != nil || got != "redirected "+corednsPod.String() {
				t.Fatalf("socket LB in the pod: DNS/TCP to %s: %q, %v; want redirected to the proxy with destination %s", service, got, err, corednsPod)
			}
		})
	}
}

// answered retries a UDP exchange that must succeed up to three times: an
// answer lost on a loaded machine (the client waits 1 s) is not what is
// tested; a netfilter DROP is EPERM at once and is not retried.
func answered(send func() (string, error)) (string, error) {
	var got string
	var err error
	for i := 0; i < 3; i++ {
		if got, err = send(); err == nil || strings.Contains(err.Error(), "operation not permitted") {
			return got, err
		}
	}
	return got, err
}
