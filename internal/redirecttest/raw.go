package redirecttest

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
)

// Senders for the bypass tests: packets an app container can make with
// CAP_NET_RAW alone, each carrying a marker payload that Capture looks for
// on the peer's side of the link. A marker seen there left the pod.

// TCP header flag bits.
const (
	tcpFIN = 0x01
	tcpSYN = 0x02
)

// Helper modes of the raw senders (the address is the destination):
const (
	// ModeRawTCPSynFin sends a TCP segment with SYN|FIN from a raw socket
	// (conntrack: invalid flag combination).
	ModeRawTCPSynFin = "rawtcp-synfin"
	// ModeRawTCPNoFlags sends a TCP segment with no flag set.
	ModeRawTCPNoFlags = "rawtcp-noflags"
	// ModePacketUDP sends an IPv4 UDP datagram as an AF_PACKET frame on
	// eth0, below the pod's IP stack and its netfilter hooks.
	ModePacketUDP = "packetudp"
)

// ModeICMP sends one ICMP (IPv4 destination) or ICMPv6 message of the given
// type and hop limit (IPv6; 0 = kernel default) from a raw socket.
func ModeICMP(typ, hopLimit uint8) string { return fmt.Sprintf("icmp:%d:%d", typ, hopLimit) }

// Proc is who a helper runs as: a UID and the capabilities it keeps
// (ambient, so they survive exec as a non-root UID). UID 0 has all.
type Proc struct {
	UID  uint32
	Caps []uintptr
}

// RunHelperAs is RunHelper for a Proc, with payload handed to the raw
// senders (and tcpmark as a plain dial).
func RunHelperAs(n ns.NetNS, p Proc, mode, addr, payload string) (string, error) {
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), HelperEnv+"="+mode, HelperEnv+"_ADDR="+addr, HelperEnv+"_PAYLOAD="+payload)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.Dir = "/"
	if p.UID != 0 {
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: p.UID, Gid: p.UID},
			AmbientCaps: p.Caps,
		}
	}
	err := n.Do(func(ns.NetNS) error { return cmd.Run() })
	if err != nil {
		return "", fmt.Errorf("%s as uid %d caps %v to %s: %v: %s", mode, p.UID, p.Caps, addr, err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

// rawMode runs a raw sender mode; ok is false for a mode it does not know.
func rawMode(mode, addr, payload string) (out string, ok bool, err error) {
	switch {
	case mode == ModeRawTCPSynFin:
		out, err = sendRawTCP(addr, tcpSYN|tcpFIN, payload)
	case mode == ModeRawTCPNoFlags:
		out, err = sendRawTCP(addr, 0, payload)
	case mode == ModePacketUDP:
		out, err = sendPacketUDP(addr, payload)
	case strings.HasPrefix(mode, "icmp:"):
		f := strings.Split(mode, ":")
		typ, err1 := strconv.ParseUint(f[1], 10, 8)
		hl, err2 := strconv.ParseUint(f[2], 10, 8)
		if err1 != nil || err2 != nil {
			return "", true, fmt.Errorf("bad icmp mode %q", mode)
		}
		out, err = sendICMP(addr, uint8(typ), uint8(hl), payload)
	default:
		return "", false, nil
	}
	return out, true, err
}

// checksum is the Internet checksum of b (RFC 1071).
func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// sourceFor is the address the kernel would pick to reach dst.
func sourceFor(dst netip.Addr) (netip.Addr, error) {
	c, err := net.Dial("udp", netip.AddrPortFrom(dst, 9).String())
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// sendRawTCP sends one TCP segment with the given flags and payload from a
// raw socket (the kernel writes the IP header), checksummed.
func sendRawTCP(addr string, flags uint8, payload string) (string, error) {
	dst, err := netip.ParseAddrPort(addr)
	if err != nil {
		return "", err
	}
	src, err := sourceFor(dst.Addr())
	if err != nil {
		return "", err
	}
	seg := make([]byte, 20+len(payload))
	binary.BigEndian.PutUint16(seg[0:], 40000)
	binary.BigEndian.PutUint16(seg[2:], dst.Port())
	binary.BigEndian.PutUint32(seg[4:], 1)
	seg[12] = 5 << 4
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], 65535)
	copy(seg[20:], payload)
	pseudo := append(append([]byte{}, src.AsSlice()...), dst.Addr().AsSlice()...)
	if dst.Addr().Is4() {
		pseudo = append(pseudo, 0, unix.IPPROTO_TCP, byte(len(seg)>>8), byte(len(seg)))
	} else {
		pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(seg)))
		pseudo = append(pseudo, 0, 0, 0, unix.IPPROTO_TCP)
	}
	binary.BigEndian.PutUint16(seg[16:], checksum(append(pseudo, seg...)))
	network := "ip4:tcp"
	if dst.Addr().Is6() {
		network = "ip6:tcp"
	}
	c, err := net.ListenPacket(network, "")
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.WriteTo(seg, &net.IPAddr{IP: dst.Addr().AsSlice()}); err != nil {
		return "", fmt.Errorf("send raw tcp to %s: %w", addr, err)
	}
	return "sent", nil
}

// sendICMP sends one ICMP/ICMPv6 message of type typ (code 0) whose body
// is payload, with the IPv6 hop limit set when hopLimit is not 0.
func sendICMP(addr string, typ, hopLimit uint8, payload string) (string, error) {
	dst, err := netip.ParseAddr(addr)
	if err != nil {
		return "", err
	}
	msg := append([]byte{typ, 0, 0, 0, 0, 0, 0, 0}, payload...)
	network := "ip6:ipv6-icmp" // the kernel computes the ICMPv6 checksum
	if dst.Is4() {
		network = "ip4:icmp"
		binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	}
	c, err := net.ListenPacket(network, "")
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dst.Is6() && hopLimit != 0 {
		rc, err := c.(*net.IPConn).SyscallConn()
		if err != nil {
			return "", err
		}
		var serr error
		if err := rc.Control(func(fd uintptr) {
			for _, opt := range []int{unix.IPV6_UNICAST_HOPS, unix.IPV6_MULTICAST_HOPS} {
				if e := unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, opt, int(hopLimit)); e != nil {
					serr = e
				}
			}
		}); err != nil {
			return "", err
		}
		if serr != nil {
			return "", fmt.Errorf("set hop limit %d: %w", hopLimit, serr)
		}
	}
	to := &net.IPAddr{IP: dst.AsSlice(), Zone: dst.Zone()}
	if _, err := c.WriteTo(msg, to); err != nil {
		return "", fmt.Errorf("send icmp type %d to %s: %w", typ, addr, err)
	}
	return "sent", nil
}

// sendPacketUDP writes an IPv4/UDP datagram to addr as a broadcast frame
// on eth0 through an AF_PACKET socket: the pod's IP stack, and with it
// every netfilter hook of the pod netns, never sees it.
func sendPacketUDP(addr, payload string) (string, error) {
	dst, err := netip.ParseAddrPort(addr)
	if err != nil || !dst.Addr().Is4() {
		return "", fmt.Errorf("packetudp needs an IPv4 address:port, got %q", addr)
	}
	ifc, err := net.InterfaceByName("eth0")
	if err != nil {
		return "", err
	}
	src, err := sourceFor(dst.Addr())
	if err != nil {
		return "", err
	}
	udp := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], dst.Port())
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	copy(udp[8:], payload)
	ip := make([]byte, 20)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	ip[8], ip[9] = 64, unix.IPPROTO_UDP
	copy(ip[12:], src.AsSlice())
	copy(ip[16:], dst.Addr().AsSlice())
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	proto := htons(unix.ETH_P_IP)
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, int(proto))
	if err != nil {
		return "", fmt.Errorf("AF_PACKET socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{Protocol: proto, Ifindex: ifc.Index, Halen: 6, Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	if err := unix.Sendto(fd, append(ip, udp...), 0, sa); err != nil {
		return "", fmt.Errorf("AF_PACKET send: %w", err)
	}
	return "sent", nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Capture records every frame arriving on the peer's link, for Saw.
type Capture struct {
	mu     sync.Mutex
	frames [][]byte
}

// CapturePeer starts capturing on peer0 in the peer netns (an AF_PACKET
// socket sees frames before the peer's own IP stack or netfilter), until
// the test ends.
func (tp *Topology) CapturePeer(t testing.TB) *Capture {
	t.Helper()
	var fd int
	err := tp.Peer.Do(func(ns.NetNS) error {
		ifc, err := net.InterfaceByName("peer0")
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index})
	})
	if err != nil {
		t.Fatalf("capture on peer0: %v", err)
	}
	c := &Capture{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return
			}
			c.mu.Lock()
			c.frames = append(c.frames, append([]byte(nil), buf[:n]...))
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = unix.Shutdown(fd, unix.SHUT_RDWR)
		unix.Close(fd)
		<-done
	})
	return c
}

// Saw waits up to wait for a frame containing marker to have arrived.
func (c *Capture) Saw(marker string, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for {
		c.mu.Lock()
		for _, f := range c.frames {
			if bytes.Contains(f, []byte(marker)) {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
