package unixsock

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Both kinds: 0600 whatever the umask, a stale socket replaced, a regular
// file refused and kept, the file removed on Close, and a newer socket at
// the same path left alone by an older one's Close.
func TestSocketContract(t *testing.T) {
	for _, kind := range []string{"unix", "unixgram"} {
		t.Run(kind, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "agent.sock")
			listen := func() (interface{ Close() error }, error) {
				if kind == "unix" {
					return Listen(path)
				}
				return ListenPacket(path)
			}
			// A stale socket, as a SIGKILLed agent leaves it.
			stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			stale.SetUnlinkOnClose(false)
			stale.Close()

			old := syscallUmask(0)
			s, err := listen()
			syscallUmask(old)
			if err != nil {
				t.Fatalf("over a stale socket: %v", err)
			}
			fi, err := os.Lstat(path)
			if err != nil || fi.Mode().Perm() != Mode || fi.Mode()&os.ModeSocket == 0 {
				t.Fatalf("socket %v %v; want a 0600 socket with umask 0", fi, err)
			}
			if kind == "unixgram" {
				c, err := net.Dial("unixgram", path)
				if err != nil {
					t.Fatalf("dial the renamed datagram socket: %v", err)
				}
				if _, err := c.Write([]byte("hi")); err != nil {
					t.Fatal(err)
				}
				c.Close()
				pc := s.(net.PacketConn)
				_ = pc.SetReadDeadline(time.Now().Add(2 * time.Second))
				buf := make([]byte, 8)
				if n, _, err := pc.ReadFrom(buf); err != nil || string(buf[:n]) != "hi" {
					t.Fatalf("ReadFrom = %q, %v", buf[:n], err)
				}
			}

			// A newer agent's socket replaces ours; our Close keeps it.
			newer, err := listen()
			if err != nil {
				t.Fatalf("second socket: %v", err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); err != nil {
				t.Fatalf("the older socket's Close removed the newer one: %v", err)
			}
			if err := newer.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Lstat(path); !os.IsNotExist(err) {
				t.Fatalf("socket left after Close: %v", err)
			}
			if err := newer.Close(); err != nil {
				t.Fatalf("second Close = %v, want the first's result", err)
			}

			// A regular file in the way is refused and kept.
			if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := listen(); err == nil || !strings.Contains(err.Error(), "non-socket") {
				t.Fatalf("over a regular file = %v; want a non-socket error", err)
			}
			if b, err := os.ReadFile(path); err != nil || string(b) != "x" {
				t.Fatalf("the regular file was changed: %q %v", b, err)
			}
			if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
				t.Fatalf("temp directories left: %v", ents)
			}
		})
	}
}
