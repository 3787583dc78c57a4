package redirecttest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// SocketLB stands in for Cilium's socket load balancing (socketLB, the
// cgroup/connect4 and cgroup/sendmsg4 BPF programs of its kube-proxy
// replacement): for processes in its cgroup, a connect() or sendmsg() to
// From is rewritten to To inside the syscall, before any packet exists, so
// the pod netns's netfilter OUTPUT sees To as the destination. The
// programs are the minimal form of that rewrite (one address and port,
// IPv4): the kernel hooks and the point in the path where they act are the
// real ones, the service lookup is not.
type SocketLB struct {
	// CgroupFD is the cgroup v2 directory the programs are attached to;
	// pass it to RunHelperInCgroup.
	CgroupFD int
}

// NewSocketLB creates a cgroup v2 directory under root (testenv.Cgroup2Root)
// and attaches the rewrite of from to to for TCP connect and UDP connect
// and sendmsg. Cleanup (detach, close, rmdir) is registered on t.
func NewSocketLB(t testing.TB, root string, from, to netip.AddrPort) *SocketLB {
	t.Helper()
	if !from.Addr().Is4() || !to.Addr().Is4() || from.Port() != to.Port() {
		t.Fatalf("NewSocketLB(%s, %s): IPv4 with the same port only", from, to)
	}
	dir, err := os.MkdirTemp(root, "authbridge-socketlb-")
	if err != nil {
		t.Fatalf("create cgroup under %s: %v", root, err)
	}
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("open cgroup %s: %v", dir, err)
	}
	t.Cleanup(func() {
		unix.Close(fd)
		if err := os.Remove(dir); err != nil {
			t.Errorf("remove cgroup %s: %v", filepath.Base(dir), err)
		}
	})
	for _, at := range []uint32{unix.BPF_CGROUP_INET4_CONNECT, unix.BPF_CGROUP_UDP4_SENDMSG} {
		prog, err := loadRewrite(at, from, to)
		if err != nil {
			t.Fatalf("load the socket LB program (attach type %d): %v", at, err)
		}
		if err := progAttach(unix.BPF_PROG_ATTACH, fd, prog, at); err != nil {
			unix.Close(prog)
			t.Fatalf("attach the socket LB program to %s: %v", dir, err)
		}
		t.Cleanup(func() {
			if err := progAttach(unix.BPF_PROG_DETACH, fd, prog, at); err != nil {
				t.Errorf("detach the socket LB program: %v", err)
			}
			unix.Close(prog)
		})
	}
	return &SocketLB{CgroupFD: fd}
}

// bpf_sock_addr offsets (include/uapi/linux/bpf.h): user_ip4 at 4,
// user_port at 24; both hold network byte order, read as little-endian
// 32-bit words here.
const (
	offUserIP4  = 4
	offUserPort = 24
)

// insn is one eBPF instruction.
func insn(op uint8, dst, src uint8, off int16, imm int32) []byte {
	b := make([]byte, 8)
	b[0] = op
	b[1] = src<<4 | dst
	binary.LittleEndian.PutUint16(b[2:], uint16(off))
	binary.LittleEndian.PutUint32(b[4:], uint32(imm))
	return b
}

// loadRewrite loads: if user_ip4 == from && user_port == from's port then
// user_ip4 = to; allow (return 1).
func loadRewrite(attachType uint32, from, to netip.AddrPort) (int, error) {
	a4, b4 := from.Addr().As4(), to.Addr().As4()
	fromIP := int32(binary.LittleEndian.Uint32(a4[:]))
	toIP := int32(binary.LittleEndian.Uint32(b4[:]))
	var port [4]byte
	binary.BigEndian.PutUint16(port[:2], from.Port())
	portWord := int32(binary.LittleEndian.Uint32(port[:]))
	const (
		ldxw   = unix.BPF_LDX | unix.BPF_MEM | unix.BPF_W
		stw    = unix.BPF_ST | unix.BPF_MEM | unix.BPF_W
		jnek   = unix.BPF_JMP | unix.BPF_JNE | unix.BPF_K
		movk   = unix.BPF_ALU64 | unix.BPF_MOV | unix.BPF_K
		exit   = unix.BPF_JMP | unix.BPF_EXIT
		r0, r1 = 0, 1
		r2, r3 = 2, 3
	)
	var prog []byte
	for _, i := range [][]byte{
		insn(ldxw, r2, r1, offUserIP4, 0),
		insn(jnek, r2, 0, 3, fromIP), // -> allow
		insn(ldxw, r3, r1, offUserPort, 0),
		insn(jnek, r3, 0, 1, portWord), // -> allow
		insn(stw, r1, 0, offUserIP4, toIP),
		insn(movk, r0, 0, 0, 1), // allow:
		insn(exit, 0, 0, 0, 0),
	} {
		prog = append(prog, i...)
	}
	license := []byte("GPL\x00")
	logBuf := make([]byte, 4096)
	// union bpf_attr for BPF_PROG_LOAD, up to expected_attach_type.
	var attr [128]byte
	binary.LittleEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_CGROUP_SOCK_ADDR)
	binary.LittleEndian.PutUint32(attr[4:], uint32(len(prog)/8))
	binary.LittleEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&prog[0]))))
	binary.LittleEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	binary.LittleEndian.PutUint32(attr[24:], 1) // log_level
	binary.LittleEndian.PutUint32(attr[28:], uint32(len(logBuf)))
	binary.LittleEndian.PutUint64(attr[32:], uint64(uintptr(unsafe.Pointer(&logBuf[0]))))
	binary.LittleEndian.PutUint32(attr[68:], attachType)
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(prog) // referenced only through attr's addresses
	runtime.KeepAlive(license)
	if errno != 0 {
		return -1, fmt.Errorf("BPF_PROG_LOAD: %w: %s", errno, string(logBuf[:clen(logBuf)]))
	}
	return int(fd), nil
}

func clen(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return len(b)
}

// progAttach runs BPF_PROG_ATTACH or BPF_PROG_DETACH of prog to the cgroup.
func progAttach(cmd uintptr, cgroupFD, prog int, attachType uint32) error {
	var attr [16]byte
	binary.LittleEndian.PutUint32(attr[0:], uint32(cgroupFD))
	binary.LittleEndian.PutUint32(attr[4:], uint32(prog))
	binary.LittleEndian.PutUint32(attr[8:], attachType)
	if _, _, errno := unix.Syscall(unix.SYS_BPF, cmd, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr))); errno != 0 {
		return errno
	}
	return nil
}
