// Package redirecttest builds throw-away network namespaces with real
// traffic for the tests of the redirect backends, the CNI plugin and the
// capability probe: a "pod" netns joined by a veth pair to a "peer" netns
// that plays the outside world, servers on both sides, and a client helper
// process that can run under any UID (the proxy's 1337 included).
//
// Test binaries that use Dial/SendUDP must call HelperMain first thing in
// TestMain: the client runs as a re-executed copy of the test binary.
package redirecttest

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/kagenti/authbridge-node/pkg/redirect"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
)

// Addresses of the topology. The peer has a second address (PeerAlt) so a
// test can tell "the resolver" from "some other host" on the same link.
var (
	PodV4     = netip.MustParseAddr("10.99.0.2")
	PeerV4    = netip.MustParseAddr("10.99.0.1")
	PeerAltV4 = netip.MustParseAddr("10.99.0.3")
	PodV6     = netip.MustParseAddr("fd99::2")
	PeerV6    = netip.MustParseAddr("fd99::1")
	PeerAltV6 = netip.MustParseAddr("fd99::3")
)

// Link-local addresses set on the veth by NewTopologyV4Only (with nodad, next
// to the ones the kernel generates) so tests can address the neighbour.
var (
	PodLinkLocal  = netip.MustParseAddr("fe80::2").WithZone("eth0")
	PeerLinkLocal = netip.MustParseAddr("fe80::1").WithZone("eth0")
)

// Topology is a pod netns and a peer netns joined by veth "eth0"/"peer0".
type Topology struct {
	Pod, Peer ns.NetNS
}

// NewTopology creates both namespaces (anonymous: the kernel frees them when
// the test closes them, so nothing can leak into /run/netns), the veth pair,
// lo up, and IPv4+IPv6 addresses on both ends (IPv6 with nodad, so they are
// usable at once). Cleanup is registered on t.
func NewTopology(t testing.TB) *Topology {
	t.Helper()
	return newTopology(t, []netip.Addr{PodV4, PodV6}, []netip.Addr{PeerV4, PeerV6, PeerAltV4, PeerAltV6})
}

// NewTopologyV4Only is like NewTopology for an IPv4-only pod: IPv4 addresses
// only, IPv6 left enabled as the kernel does by default, so the veth ends
// have link-local IPv6 addresses (the fixed PodLinkLocal/PeerLinkLocal and
// the kernel's own) and nothing else.
func NewTopologyV4Only(t testing.TB) *Topology {
	t.Helper()
	return newTopology(t,
		[]netip.Addr{PodV4, PodLinkLocal.WithZone("")},
		[]netip.Addr{PeerV4, PeerAltV4, PeerLinkLocal.WithZone("")})
}

func newTopology(t testing.TB, podAddrs, peerAddrs []netip.Addr) *Topology {
	t.Helper()
	testenv.Root(t, "network namespaces")
	pod, err := ns.TempNetNS()
	if err != nil {
		t.Fatalf("create pod netns: %v", err)
	}
	t.Cleanup(func() { pod.Close() })
	peer, err := ns.TempNetNS()
	if err != nil {
		t.Fatalf("create peer netns: %v", err)
	}
	t.Cleanup(func() { peer.Close() })
	tp := &Topology{Pod: pod, Peer: peer}
	err = pod.Do(func(ns.NetNS) error {
		v := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "peer0", PeerNamespace: netlink.NsFd(int(peer.Fd()))}
		if err := netlink.LinkAdd(v); err != nil {
			return fmt.Errorf("add veth: %w", err)
		}
		return setupLink("eth0", podAddrs...)
	})
	if err != nil {
		t.Fatal(err)
	}
	err = peer.Do(func(ns.NetNS) error {
		return setupLink("peer0", peerAddrs...)
	})
	if err != nil {
		t.Fatal(err)
	}
	return tp
}

func setupLink(name string, addrs ...netip.Addr) error {
	if err := LinkUp("lo"); err != nil {
		return err
	}
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	for _, a := range addrs {
		if err := AddAddr(l, netip.PrefixFrom(a, map[bool]int{true: 24, false: 64}[a.Is4()])); err != nil {
			return err
		}
	}
	return netlink.LinkSetUp(l)
}

// LinkUp sets the named link up in the current netns.
func LinkUp(name string) error {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("find %s: %w", name, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// AddAddr adds an address to a link; IPv6 addresses skip duplicate address
// detection so they work immediately.
func AddAddr(l netlink.Link, p netip.Prefix) error {
	a := &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := netlink.AddrAdd(l, a); err != nil {
		return fmt.Errorf("add %s to %s: %w", p, l.Attrs().Name, err)
	}
	return nil
}

// Listen opens listeners in netns n (TCP or UDP per network) and closes them
// at test cleanup.
func listenIn(t testing.TB, n ns.NetNS, network, addr string) any {
	t.Helper()
	var out any
	err := n.Do(func(ns.NetNS) error {
		var err error
		if strings.HasPrefix(network, "udp") {
			out, err = net.ListenPacket(network, addr)
		} else {
			out, err = net.Listen(network, addr)
		}
		return err
	})
	if err != nil {
		t.Fatalf("listen %s %s: %v", network, addr, err)
	}
	t.Cleanup(func() { out.(interface{ Close() error }).Close() })
	return out
}

// ServeRedirect starts the stand-in for the proxy's transparent listener in
// the pod netns on 127.0.0.1:port and [::1]:port. Every accepted connection
// gets one line "redirected <original destination>".
func (tp *Topology) ServeRedirect(t testing.TB, port uint16) {
	t.Helper()
	p := strconv.Itoa(int(port))
	for _, l := range []net.Listener{
		listenIn(t, tp.Pod, "tcp4", "127.0.0.1:"+p).(net.Listener),
		listenIn(t, tp.Pod, "tcp6", "[::1]:"+p).(net.Listener),
	} {
		go serveTCP(l, redirectedLine)
	}
}

// redirectedLine names the connection's original destination, as the
// proxy's transparent listener would learn it.
func redirectedLine(c *net.TCPConn) string {
	od, err := redirect.OriginalDst(c)
	if err != nil {
		return "redirected error " + err.Error()
	}
	return "redirected " + od.String()
}

// ServeInbound starts the stand-in for the proxy's inbound listener in the
// pod netns on the wildcard addresses (PREROUTING REDIRECT rewrites to the
// receiving interface's address). Lines: "redirected <original destination>".
func (tp *Topology) ServeInbound(t testing.TB, port uint16) {
	t.Helper()
	p := strconv.Itoa(int(port))
	for _, nw := range []string{"tcp4", "tcp6"} {
		l := listenIn(t, tp.Pod, nw, ":"+p).(net.Listener)
		go serveTCP(l, redirectedLine)
	}
}

// ServePodDirect starts a plain server in the pod netns on port (an app
// port); lines: "direct <local address>".
func (tp *Topology) ServePodDirect(t testing.TB, port uint16) {
	t.Helper()
	p := strconv.Itoa(int(port))
	for _, nw := range []string{"tcp4", "tcp6"} {
		l := listenIn(t, tp.Pod, nw, ":"+p).(net.Listener)
		go serveTCP(l, func(c *net.TCPConn) string { return "direct " + c.LocalAddr().String() })
	}
}

// DialFromPeer connects from the peer netns (as root) to addr, e.g. to a pod
// address for inbound tests, and returns the line the server sent.
func (tp *Topology) DialFromPeer(addr netip.AddrPort) (string, error) {
	return RunHelper(tp.Peer, 0, "tcp", addr.String())
}

// ServePeer starts, in the peer netns, a TCP server on every peer address at
// tcpPort answering "direct <local address>", and UDP echo servers on
// udpPorts answering "udp <local address>".
func (tp *Topology) ServePeer(t testing.TB, tcpPort uint16, udpPorts ...uint16) {
	t.Helper()
	p := strconv.Itoa(int(tcpPort))
	for _, nw := range []string{"tcp4", "tcp6"} {
		l := listenIn(t, tp.Peer, nw, ":"+p).(net.Listener)
		go serveTCP(l, func(c *net.TCPConn) string { return "direct " + c.LocalAddr().String() })
	}
	for _, up := range udpPorts {
		// One socket per address: a wildcard UDP socket may answer from the
		// other IPv6 address of the link, which the client's connected
		// socket would discard.
		for _, a := range []netip.Addr{PeerV4, PeerAltV4, PeerV6, PeerAltV6} {
			local := netip.AddrPortFrom(a, up).String()
			pc := listenIn(t, tp.Peer, "udp", local).(net.PacketConn)
			go echoUDP(pc, "udp "+local)
		}
	}
}

// ServePeerUDP starts a UDP echo server in the peer netns on addr (a zone
// names the peer's interface, e.g. for a link-local address); answers are
// "udp <addr>".
func (tp *Topology) ServePeerUDP(t testing.TB, addr netip.AddrPort) {
	t.Helper()
	pc := listenIn(t, tp.Peer, "udp", addr.String()).(net.PacketConn)
	go echoUDP(pc, "udp "+addr.String())
}

// ServePodLoopback starts a plain server in the pod netns on 127.0.0.1:port
// and [::1]:port; lines: "direct <local address>".
func (tp *Topology) ServePodLoopback(t testing.TB, port uint16) {
	t.Helper()
	p := strconv.Itoa(int(port))
	for _, a := range []string{"127.0.0.1:" + p, "[::1]:" + p} {
		nw := "tcp4"
		if strings.HasPrefix(a, "[") {
			nw = "tcp6"
		}
		l := listenIn(t, tp.Pod, nw, a).(net.Listener)
		go serveTCP(l, func(c *net.TCPConn) string { return "direct " + c.LocalAddr().String() })
	}
}

func echoUDP(pc net.PacketConn, answer string) {
	buf := make([]byte, 512)
	for {
		_, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo([]byte(answer), from)
	}
}

func serveTCP(l net.Listener, line func(*net.TCPConn) string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = fmt.Fprintln(c, line(c.(*net.TCPConn)))
		}()
	}
}

// HelperEnv selects the client helper mode in a re-executed test binary.
const HelperEnv = "AUTHBRIDGE_REDIRECTTEST_HELPER"

// HelperMain turns a re-executed test binary into the client helper; it
// returns at once in the normal test process. Call it first in TestMain.
func HelperMain() {
	mode := os.Getenv(HelperEnv)
	if mode == "" {
		return
	}
	addr := os.Getenv(HelperEnv + "_ADDR")
	var out string
	var err error
	switch mode {
	case "tcp":
		out, err = tcpClient(addr)
	case "tcpmark":
		out, err = tcpMarkClient(addr, redirect.DefaultMark)
	case "udp":
		out, err = udpClient(addr)
	case "ping":
		out, err = pingClient(addr)
	default:
		var known bool
		if out, known, err = rawMode(mode, addr, os.Getenv(HelperEnv+"_PAYLOAD")); !known {
			err = fmt.Errorf("unknown helper mode %q", mode)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(out)
	os.Exit(0)
}

const clientTimeout = 3 * time.Second

func tcpClient(addr string) (string, error) {
	return dialReadLine(net.Dialer{Timeout: clientTimeout}, addr)
}

// dialReadLine connects with d and returns the one line the server sends.
func dialReadLine(d net.Dialer, addr string) (string, error) {
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(clientTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("read from %s: %w", addr, err)
	}
	return strings.TrimSpace(line), nil
}

// tcpMarkClient is tcpClient with SO_MARK set on the socket before connect,
// the way the proxy marks the connections it makes itself.
func tcpMarkClient(addr string, mark uint32) (string, error) {
	d := net.Dialer{Timeout: clientTimeout, Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("setsockopt SO_MARK %#x: %w", mark, serr)
		}
		return nil
	}}
	return dialReadLine(d, addr)
}

// pingClient sends one ICMP (or ICMPv6) echo request to addr (an IP address)
// from a raw socket and waits a second for the reply: "pong <addr>". The
// DROP in AB_NOTCP shows up as EPERM from the send.
func pingClient(addr string) (string, error) {
	dst, err := netip.ParseAddr(addr)
	if err != nil {
		return "", err
	}
	network, echo, reply := "ip4:icmp", byte(8), byte(0)
	if dst.Is6() {
		network, echo, reply = "ip6:ipv6-icmp", 128, 129
	}
	c, err := net.ListenPacket(network, "")
	if err != nil {
		return "", err
	}
	defer c.Close()
	id := uint16(os.Getpid())
	msg := []byte{echo, 0, 0, 0, byte(id >> 8), byte(id), 0, 1, 'a', 'b', 'n'}
	if dst.Is4() { // the kernel fills in the ICMPv6 checksum, not ICMP's
		var sum uint32
		for i := 0; i < len(msg); i += 2 {
			w := uint32(msg[i]) << 8
			if i+1 < len(msg) {
				w |= uint32(msg[i+1])
			}
			sum += w
		}
		for sum > 0xffff {
			sum = sum>>16 + sum&0xffff
		}
		msg[2], msg[3] = byte(^sum>>8), byte(^sum)
	}
	to := &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	buf := make([]byte, 1500)
	// Three tries a second apart: right after the veth comes up the first
	// request can be lost while the link-local address is still tentative.
	var lastErr error
	for try := 0; try < 3; try++ {
		if _, err := c.WriteTo(msg, to); err != nil {
			return "", fmt.Errorf("send echo request to %s: %w", addr, err)
		}
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, from, err := c.ReadFrom(buf)
			if err != nil {
				lastErr = err
				break
			}
			if n >= 8 && buf[0] == reply && buf[4] == byte(id>>8) && buf[5] == byte(id) {
				return "pong " + from.String(), nil
			}
		}
	}
	return "", fmt.Errorf("no echo reply from %s: %w", addr, lastErr)
}

func udpClient(addr string) (string, error) {
	c, err := net.Dial("udp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("ping")); err != nil {
		return "", fmt.Errorf("send to %s: %w", addr, err)
	}
	_ = c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	if err != nil {
		return "", fmt.Errorf("no answer from %s: %w", addr, err)
	}
	return string(buf[:n]), nil
}

// Dial connects from the pod netns, as uid, to addr over TCP in a separate
// process and returns the line the server sent ("redirected <orig dst>" or
// "direct <addr>").
func (tp *Topology) Dial(uid uint32, addr netip.AddrPort) (string, error) {
	return RunHelper(tp.Pod, uid, "tcp", addr.String())
}

// DialMarked is Dial with SO_MARK redirect.DefaultMark (0x539) set on the
// client socket before connect, as the proxy does.
func (tp *Topology) DialMarked(uid uint32, addr netip.AddrPort) (string, error) {
	return RunHelper(tp.Pod, uid, "tcpmark", addr.String())
}

// Ping sends one ICMP/ICMPv6 echo request from the pod netns (as root, raw
// socket) to addr and returns "pong <addr>" or an error (EPERM when the rules
// drop it).
func (tp *Topology) Ping(addr netip.Addr) (string, error) {
	return RunHelper(tp.Pod, 0, "ping", addr.String())
}

// SendUDP sends one datagram from the pod netns as uid and returns the
// answer; an error when the packet was dropped (EPERM from the netfilter
// DROP in OUTPUT) or no answer came.
func (tp *Topology) SendUDP(uid uint32, addr netip.AddrPort) (string, error) {
	return RunHelper(tp.Pod, uid, "udp", addr.String())
}

// RunHelper runs the client helper ("tcp" or "udp" to addr) as uid inside
// netns n. A process of its own is the only way to have another UID: the
// UID match in netfilter looks at the socket owner's fsuid, set per process.
func RunHelper(n ns.NetNS, uid uint32, mode, addr string) (string, error) {
	return RunHelperInCgroup(n, uid, mode, addr, -1)
}

// RunHelperInCgroup is RunHelper with the client process started inside
// the cgroup v2 directory open as cgroupFD (clone3 CLONE_INTO_CGROUP), so
// the cgroup's BPF socket hooks apply to its sockets from the first; -1
// leaves it in the test's cgroup.
func RunHelperInCgroup(n ns.NetNS, uid uint32, mode, addr string, cgroupFD int) (string, error) {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// /proc/self/exe: the test binary lives in a 0700 go-build dir that other
	// UIDs cannot traverse; the magic link is followed without that walk.
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), HelperEnv+"="+mode, HelperEnv+"_ADDR="+addr)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{}
	if uid != 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uid, Gid: uid}
	}
	if cgroupFD >= 0 {
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, cgroupFD
	}
	err := n.Do(func(ns.NetNS) error { return cmd.Run() })
	if err != nil {
		return "", fmt.Errorf("%s client as uid %d to %s: %v: %s", mode, uid, addr, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// Do runs f inside the pod netns.
func (tp *Topology) Do(f func() error) error {
	return tp.Pod.Do(func(ns.NetNS) error { return f() })
}

// Output runs a host binary (nft, iptables-save, ...) inside netns n and
// returns its combined output; for reading rules back in tests.
func Output(n ns.NetNS, name string, args ...string) (string, error) {
	var out []byte
	err := n.Do(func(ns.NetNS) error {
		var err error
		out, err = exec.Command(name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
