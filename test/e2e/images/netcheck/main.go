// Command netcheck is the e2e tests' app and server in one static binary
// (the image has no shell):
//
//	netcheck serve [-http :8080] [-udp :9090]  HTTP server answering "<hostname> <remote addr>"; UDP echo
//	netcheck get URL                          prints the response body; exit 1 on error
//	netcheck udp HOST:PORT                    sends one datagram, waits 2 s for the echo; exit 1 if none
//	netcheck dns NAME                         resolves NAME with the pod's resolver; exit 1 on error
//	netcheck sleep                            waits forever (an app container that only gets exec'd)
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: netcheck serve|get|udp|dns|sleep ...")
	}
	arg := func(i int) string {
		if len(os.Args) <= i {
			fail("netcheck %s: missing argument %d", os.Args[1], i-1)
		}
		return os.Args[i]
	}
	switch os.Args[1] {
	case "serve":
		serve()
	case "get", "get-direct":
		c := &http.Client{Timeout: 5 * time.Second}
		if os.Args[1] == "get-direct" {
			// An app that ignores HTTP_PROXY: only the redirect can catch it.
			c.Transport = &http.Transport{Proxy: nil}
		}
		resp, err := c.Get(arg(2))
		if err != nil {
			fail("get: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		fmt.Print(string(b))
		if resp.StatusCode != http.StatusOK {
			fail("get: status %s", resp.Status)
		}
	case "udp":
		c, err := net.Dial("udp", arg(2))
		if err != nil {
			fail("udp dial: %v", err)
		}
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("ping")); err != nil {
			fail("udp write: %v", err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			fail("udp read: %v", err)
		}
		fmt.Println(string(buf[:n]))
	case "dns":
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg(2))
		if err != nil {
			fail("dns: %v", err)
		}
		fmt.Println(addrs)
	case "sleep":
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
		<-sigs
	default:
		fail("unknown command %q", os.Args[1])
	}
}

func serve() {
	host, _ := os.Hostname()
	go func() {
		pc, err := net.ListenPacket("udp", ":9090")
		if err != nil {
			fail("udp listen: %v", err)
		}
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err == nil {
				_, _ = pc.WriteTo(buf[:n], addr)
			}
		}
	}()
	http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s\n", host, r.RemoteAddr)
	})
	if err := http.ListenAndServe(":8080", nil); err != nil {
		fail("http: %v", err)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(1)
}
