package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
)

// BenchmarkAgentIdle runs the real node-agent binary (real probe as root,
// real kube-apiserver, temp CNI dirs with kindnet's conflist) for
// AUTHBRIDGE_MEASURE_SECONDS (default 30) after it is ready, then reads its
// VmRSS and utime+stime from /proc. Run with hack/measure-agent.sh.
// Fails if RSS reaches 40 MiB.
func BenchmarkAgentIdle(b *testing.B) {
	dur := 30 * time.Second
	if s := os.Getenv("AUTHBRIDGE_MEASURE_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			b.Fatalf("AUTHBRIDGE_MEASURE_SECONDS: %v", err)
		}
		dur = time.Duration(n) * time.Second
	}
	srv := apiserver.Start(b)
	dir := b.TempDir()
	bin := filepath.Join(dir, "node-agent")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		b.Fatalf("build node-agent: %v\n%s", err, out)
	}
	ctx := context.Background()
	cs := srv.AdminClient(b)
	_ = cs
	tok, err := srv.ServiceAccountToken(ctx, "authbridge-system", "authbridge-node", time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []string{"net.d", "bin", "state", "sa"} {
		os.MkdirAll(filepath.Join(dir, d), 0o755)
	}
	kindnet, err := os.ReadFile("../../internal/install/testdata/10-kindnet.conflist")
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "net.d", "10-kindnet.conflist"), kindnet, 0o644)
	os.WriteFile(filepath.Join(dir, "sa", "token"), []byte(tok), 0o600)
	os.WriteFile(filepath.Join(dir, "sa", "ca.crt"), srv.CA, 0o644)
	os.WriteFile(filepath.Join(dir, "kubeconfig"), srv.AdminKubeconfig(), 0o600)
	os.WriteFile(filepath.Join(dir, "plugin"), []byte("#!/bin/sh\n"), 0o755)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	cfg := fmt.Sprintf("cniBinDir: %s\ncniConfDir: %s\nhostCNIConfDir: %s\nstateDir: %s\ncredentialDir: %s\nmetricsAddr: %q\nclusterDNS: [10.96.0.10]\n",
		filepath.Join(dir, "bin"), filepath.Join(dir, "net.d"), filepath.Join(dir, "net.d"), filepath.Join(dir, "state"), filepath.Join(dir, "cred"), addr)
	os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(cfg), 0o644)
	node := "measure-node"
	if _, err := cs.CoreV1().Nodes().Create(ctx, nodeObj(node), metaCreate); err != nil {
		b.Fatal(err)
	}

	// The plugin's own ServiceAccount, whose Node-bound token the agent
	// requests.
	if _, err := srv.ServiceAccountToken(ctx, "authbridge-system", "authbridge-cni", time.Hour); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", filepath.Join(dir, "config.yaml"),
		"--kubeconfig", filepath.Join(dir, "kubeconfig"), "--node-name", node, "--pod-namespace", "authbridge-system",
		"--ca-file", filepath.Join(dir, "sa", "ca.crt"),
		"--plugin-api-server", srv.URL, "--plugin-binary", filepath.Join(dir, "plugin"),
		"--host-root", "/", "--kubelet-config", filepath.Join(dir, "absent"), "--resolv-conf", "/etc/resolv.conf")
	logf, _ := os.Create(filepath.Join(dir, "agent.log"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			logb, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
			b.Fatalf("agent not ready in 60s:\n%s", logb)
		}
		time.Sleep(200 * time.Millisecond)
	}
	pid := cmd.Process.Pid
	cpu0 := cpuTicks(b, pid)
	b.ResetTimer()
	time.Sleep(dur)
	b.StopTimer()
	cpu1 := cpuTicks(b, pid)
	rss, hwm := status(b, pid, "VmRSS:"), status(b, pid, "VmHWM:")
	const clkTck = 100 // USER_HZ on Linux
	cpuSec := float64(cpu1-cpu0) / clkTck
	b.ReportMetric(float64(rss)/1024, "RSS-MiB")
	b.ReportMetric(float64(hwm)/1024, "peakRSS-MiB")
	b.ReportMetric(cpuSec/dur.Seconds()*100, "idleCPU-%")
	fmt.Fprintf(os.Stderr, "node-agent idle for %s: VmRSS %.1f MiB, VmHWM %.1f MiB, CPU %.2f s (%.3f%% of one core)\n",
		dur, float64(rss)/1024, float64(hwm)/1024, cpuSec, cpuSec/dur.Seconds()*100)
	if rss >= 40*1024 {
		b.Errorf("agent RSS %d KiB >= 40 MiB", rss)
	}
}

func cpuTicks(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// Fields after the ")" of comm: state is field 3; utime 14, stime 15.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func status(b *testing.B, pid int, key string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, key) {
			f := strings.Fields(line)
			v, _ := strconv.ParseInt(f[1], 10, 64)
			return v
		}
	}
	b.Fatalf("%s not in /proc/%d/status", key, pid)
	return 0
}
