package redirect

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and, with level
// SOL_IPV6, IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h); both are 80.
const soOriginalDst = 80

// OriginalDst returns the destination a REDIRECTed connection was addressed
// to before NAT, read from conntrack with SO_ORIGINAL_DST (IPv4) or
// IP6T_SO_ORIGINAL_DST (IPv6). c is a connection accepted on the redirect
// listener.
func OriginalDst(c *net.TCPConn) (netip.AddrPort, error) {
	local, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("original destination: unexpected local address %v", c.LocalAddr())
	}
	v4 := local.IP.To4() != nil
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", err)
	}
	var (
		res    netip.AddrPort
		sysErr error
	)
	ctlErr := raw.Control(func(fd uintptr) {
		if v4 {
			var sa unix.RawSockaddrInet4
			sysErr = getsockopt(int(fd), unix.SOL_IP, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
			if sysErr == nil {
				res = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), portFromNet(sa.Port))
			}
			return
		}
		var sa unix.RawSockaddrInet6
		sysErr = getsockopt(int(fd), unix.SOL_IPV6, unsafe.Pointer(&sa), unsafe.Sizeof(sa))
		if sysErr == nil {
			res = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), portFromNet(sa.Port))
		}
	})
	if ctlErr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination: %w", ctlErr)
	}
	if sysErr != nil {
		return netip.AddrPort{}, fmt.Errorf("original destination (SO_ORIGINAL_DST) of %v: %w", c.LocalAddr(), sysErr)
	}
	return res, nil
}

func getsockopt(fd, level int, p unsafe.Pointer, size uintptr) error {
	l := uint32(size)
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), uintptr(level), soOriginalDst, uintptr(p), uintptr(unsafe.Pointer(&l)), 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// portFromNet converts a sockaddr port (network byte order in memory) to host order.
func portFromNet(p uint16) uint16 {
	var b [2]byte
	*(*uint16)(unsafe.Pointer(&b[0])) = p
	return binary.BigEndian.Uint16(b[:])
}
