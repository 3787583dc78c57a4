package decision

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// Listen creates the socket at path with mode 0600 (the plugin runs as
// root; nobody else may ask about pods or pose as the agent). A stale
// socket left by a previous agent is replaced; any other file there is an
// error. The umask is not trusted: the socket is created in a private
// 0700 temp directory, chmodded, then renamed into place, so it is never
// reachable with a wider mode.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("decision socket %s: a non-socket file is in the way", path)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("decision socket %s: %w", path, err)
	}
	tmpDir, err := os.MkdirTemp(dir, ".decision-")
	if err != nil {
		return nil, fmt.Errorf("decision socket: temp dir in %s: %w", dir, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, SocketName)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("decision socket: listen: %w", err)
	}
	ul := ln.(*net.UnixListener)
	ul.SetUnlinkOnClose(false)
	if err := unix.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("decision socket: chmod: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("decision socket: move into place at %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("decision socket %s: %w", path, err)
	}
	return &unlinkListener{UnixListener: ul, path: path, fi: fi}, nil
}

// unlinkListener removes the socket file on Close, so a stopped agent
// leaves no socket that would make the plugin wait for a dial timeout
// (connection refused is immediate either way; a missing file is clearer).
// A socket a newer agent put there meanwhile (DaemonSet maxSurge) is left
// alone.
//
// Close runs once: concurrent callers (Serve's ctx goroutine and Serve
// itself) wait for the first, so no Close can run after Serve returned and
// remove a file created there since (a new file may reuse the socket's
// inode number, which SameFile would take for the socket).
type unlinkListener struct {
	*net.UnixListener
	path string
	fi   os.FileInfo
	once sync.Once
	err  error
}

func (l *unlinkListener) Close() error {
	l.once.Do(func() {
		l.err = l.UnixListener.Close()
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.fi) {
			_ = os.Remove(l.path)
		}
	})
	return l.err
}
