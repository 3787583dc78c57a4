// Package unixsock creates the agent's unix sockets (the decision socket,
// stream; the plugin events socket, datagram) with one guarantee: the
// socket is never reachable with a mode wider than 0600, a stale socket
// from a previous agent is replaced, any other file in the way is an
// error, and Close removes the socket only if it is still this one.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Mode is every socket's permission: the plugin runs as root; nobody else
// may ask about pods or pose as the agent.
const Mode = 0o600

// Listen creates a stream socket at path.
func Listen(path string) (net.Listener, error) {
	var ul *net.UnixListener
	fi, err := place(path, func(tmp string) (func() error, error) {
		l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
		if err != nil {
			return nil, err
		}
		// The file is renamed away from tmp; Close must not unlink by
		// name (it could remove a newer agent's socket): unlink.close does.
		l.SetUnlinkOnClose(false)
		ul = l
		return l.Close, nil
	})
	if err != nil {
		return nil, err
	}
	return &listener{UnixListener: ul, unlink: unlink{path: path, fi: fi}}, nil
}

// ListenPacket creates a datagram socket at path.
func ListenPacket(path string) (net.PacketConn, error) {
	var uc *net.UnixConn
	fi, err := place(path, func(tmp string) (func() error, error) {
		c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: tmp, Net: "unixgram"})
		if err != nil {
			return nil, err
		}
		uc = c
		return c.Close, nil
	})
	if err != nil {
		return nil, err
	}
	return &packetConn{UnixConn: uc, unlink: unlink{path: path, fi: fi}}, nil
}

// place binds a socket in a private 0700 temp directory beside path (the
// umask is not trusted), chmods it, then renames it over path.
func place(path string, bind func(tmp string) (closeFn func() error, err error)) (os.FileInfo, error) {
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("socket %s: a non-socket file is in the way (remove it if it is not needed)", path)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmpDir, err := os.MkdirTemp(dir, ".sock-")
	if err != nil {
		return nil, fmt.Errorf("socket %s: temp dir in %s: %w", path, dir, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, filepath.Base(path))
	closeFn, err := bind(tmp)
	if err != nil {
		return nil, fmt.Errorf("socket %s: listen: %w", path, err)
	}
	fail := func(err error) (os.FileInfo, error) {
		_ = closeFn()
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	if err := unix.Chmod(tmp, Mode); err != nil {
		return fail(fmt.Errorf("chmod: %w", err))
	}
	if err := os.Rename(tmp, path); err != nil {
		return fail(fmt.Errorf("move into place: %w", err))
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return fail(err)
	}
	return fi, nil
}

// unlink removes the socket file once, after closing, so a stopped agent
// leaves no socket behind; a socket a newer agent put there meanwhile
// (DaemonSet maxSurge) is left alone. Close runs once: concurrent callers
// wait for the first, so no Close runs later and removes a file created
// since (a new file may reuse the socket's inode number, which SameFile
// would take for the socket).
type unlink struct {
	path string
	fi   os.FileInfo
	once sync.Once
	err  error
}

func (u *unlink) close(closeFn func() error) error {
	u.once.Do(func() {
		u.err = closeFn()
		if fi, err := os.Lstat(u.path); err == nil && os.SameFile(fi, u.fi) {
			_ = os.Remove(u.path)
		}
	})
	return u.err
}

type listener struct {
	*net.UnixListener
	unlink unlink
}

func (l *listener) Close() error { return l.unlink.close(l.UnixListener.Close) }

type packetConn struct {
	*net.UnixConn
	unlink unlink
}

func (c *packetConn) Close() error { return c.unlink.close(c.UnixConn.Close) }
