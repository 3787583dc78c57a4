package redirecttest

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// SocketLB stands in for Cilium's socket load balancing (socketLB, the
// cgroup/connect4 and cgroup/sendmsg4 BPF programs of its kube-proxy
// replacement): for processes in its cgroup, a connect() or sendmsg() to
// From is rewritten to To inside the syscall, before any packet exists, so
// the pod netns's netfilter OUTPUT sees To as the destination. The
// programs are the minimal form of that rewrite (one address and port,
// IPv4), loaded and attached with cilium/ebpf (the library Cilium itself
// uses): the kernel hooks and the point in the path where they act are the
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
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet4Connect, ebpf.AttachCGroupUDP4Sendmsg} {
		prog, err := rewriteProgram(at, from, to)
		if err != nil {
			t.Fatalf("load the socket LB program (%s): %v", at, err)
		}
		l, err := link.AttachCgroup(link.CgroupOptions{Path: dir, Attach: at, Program: prog})
		if err != nil {
			prog.Close()
			t.Fatalf("attach the socket LB program (%s) to %s: %v", at, dir, err)
		}
		// Registered after the rmdir above, so they run before it.
		t.Cleanup(func() {
			if err := l.Close(); err != nil {
				t.Errorf("detach the socket LB program: %v", err)
			}
			prog.Close()
		})
	}
	return &SocketLB{CgroupFD: fd}
}

// bpf_sock_addr offsets (include/uapi/linux/bpf.h): user_ip4 at 4,
// user_port at 24; both hold network byte order, read as native
// (little-endian) 32-bit words here.
const (
	offUserIP4  = 4
	offUserPort = 24
)

// rewriteProgram loads: if user_ip4 == from && user_port == from's port
// then user_ip4 = to; allow (return 1).
func rewriteProgram(at ebpf.AttachType, from, to netip.AddrPort) (*ebpf.Program, error) {
	a4, b4 := from.Addr().As4(), to.Addr().As4()
	var port [4]byte
	binary.BigEndian.PutUint16(port[:2], from.Port())
	word := func(b []byte) int64 { return int64(int32(binary.LittleEndian.Uint32(b))) }
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, offUserIP4, asm.Word),
		asm.JNE.Imm(asm.R2, int32(word(a4[:])), "allow"),
		asm.LoadMem(asm.R3, asm.R1, offUserPort, asm.Word),
		asm.JNE.Imm(asm.R3, int32(word(port[:])), "allow"),
		asm.StoreImm(asm.R1, offUserIP4, word(b4[:]), asm.Word),
		asm.Mov.Imm(asm.R0, 1).WithSymbol("allow"),
		asm.Return(),
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Type: ebpf.CGroupSockAddr, AttachType: at, License: "GPL", Instructions: insns,
	})
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	return prog, nil
}
