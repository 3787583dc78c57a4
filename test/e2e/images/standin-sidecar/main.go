// Command standin-sidecar stands in for the AuthBridge sidecar in the e2e
// tests. It runs as UID 1337, accepts the pod's redirected egress on :8082,
// records each connection's original destination (SO_ORIGINAL_DST), dials
// that destination itself (its own traffic is exempt from the redirect by
// UID) and pipes the bytes both ways. GET /records on :8099 returns the
// records as JSON.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Record is one redirected connection as the sidecar saw it.
type Record struct {
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	OrigDst  string    `json:"origDst"`
	Onward   string    `json:"onward"`   // local address of the sidecar's own dial
	DialErr  string    `json:"dialErr"`  // why the onward dial failed, if it did
	ProxyUID int       `json:"proxyUID"` // the UID the sidecar ran as
}

type recorder struct {
	mu   sync.Mutex
	recs []Record
}

func (r *recorder) add(rec Record) {
	r.mu.Lock()
	r.recs = append(r.recs, rec)
	r.mu.Unlock()
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(r.recs)
}

// origDst reads the pre-NAT destination of a REDIRECTed IPv4 connection.
func origDst(c *net.TCPConn) (netip.AddrPort, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("raw conn: %w", err)
	}
	var ap netip.AddrPort
	var serr error
	if err := raw.Control(func(fd uintptr) {
		// SO_ORIGINAL_DST returns a sockaddr_in; IPv6Mreq is a 20-byte
		// buffer that fits it (port at [2:4], address at [4:8]).
		m, e := unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST)
		if e != nil {
			serr = e
			return
		}
		b := m.Multiaddr
		ap = netip.AddrPortFrom(netip.AddrFrom4([4]byte{b[4], b[5], b[6], b[7]}), uint16(b[2])<<8|uint16(b[3]))
	}); err != nil {
		return netip.AddrPort{}, err
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("getsockopt SO_ORIGINAL_DST: %w", serr)
	}
	return ap, nil
}

func handle(c *net.TCPConn, rec *recorder) {
	defer c.Close()
	r := Record{Time: time.Now(), Source: c.RemoteAddr().String(), ProxyUID: os.Getuid()}
	dst, err := origDst(c)
	if err != nil {
		r.DialErr = err.Error()
		rec.add(r)
		return
	}
	r.OrigDst = dst.String()
	up, err := net.DialTimeout("tcp", dst.String(), 5*time.Second)
	if err != nil {
		r.DialErr = err.Error()
		rec.add(r)
		return
	}
	defer up.Close()
	r.Onward = up.LocalAddr().String()
	rec.add(r)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); c.CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

func main() {
	listen := flag.String("listen", ":8082", "transparent listener address")
	admin := flag.String("admin", ":8099", "records endpoint address")
	flag.Parse()
	rec := &recorder{}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		slog.Error("listen", "addr", *listen, "err", err)
		os.Exit(1)
	}
	go func() {
		if err := http.ListenAndServe(*admin, rec); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("admin server", "err", err)
			os.Exit(1)
		}
	}()
	slog.Info("standin-sidecar ready", "listen", *listen, "admin", *admin, "uid", os.Getuid())
	for {
		c, err := ln.Accept()
		if err != nil {
			slog.Error("accept", "err", err)
			continue
		}
		go handle(c.(*net.TCPConn), rec)
	}
}
