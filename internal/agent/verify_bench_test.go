package agent

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/internal/enforce"
	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// BenchmarkVerifyPass110Pods is the agent's own cost of one verify pass on
// a full node (110 pods, the kubelet's default maxPods): 110 real network
// namespaces, each with the plugin's dual-stack rules programmed through
// enforce.Program and recorded, then VerifyPass (read the records, list
// the node's pods from the real API server, open each netns, Verify) timed.
// Per backend; reported: ms-per-pass (wall) and cpu-ms-per-pass (the
// process's and its children's user+system time), and cpu-pct-at-30s (that
// CPU as a share of one core at the default verifyInterval).
func BenchmarkVerifyPass110Pods(b *testing.B) {
	const pods = 110
	cs := apiserver.Shared(b).AdminClient(b)
	for _, backend := range redirect.AllBackends {
		b.Run(backend, func(b *testing.B) {
			cfg, err := config.ParseAgent(nil)
			if err != nil {
				b.Fatal(err)
			}
			cfg.ProbeInterval.Duration = time.Hour
			cfg.StateDir = b.TempDir()
			cfg.ClusterDNS = []string{"10.96.0.10"}
			a, err := New(Options{Config: cfg, NodeName: "node-bench", Client: cs, Probe: (&fakeProbe{}).probe, Registry: nil})
			if err != nil {
				b.Fatal(err)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "bench", Name: "p"}}
			for i := 0; i < pods; i++ {
				n, err := ns.TempNetNS()
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { n.Close() })
				_, err = enforce.Program(enforce.Request{Pod: pod, Policy: cfg.Policy, Backends: []string{backend},
					AddrFamilies: []redirect.Family{redirect.IPv4, redirect.IPv6}, NetNS: n, NewBackend: redirect.New, StateDir: cfg.StateDir,
					Record: containerstate.Record{ContainerID: fmt.Sprintf("bench-%d", i), Netns: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), n.Fd()),
						Namespace: "bench", Pod: fmt.Sprintf("p%d", i), Mode: podmode.EnforceRedirect}})
				if err != nil {
					b.Fatal(err)
				}
			}
			ctx := context.Background()
			b.ResetTimer()
			cpu0 := cpuNow()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				a.VerifyPass(ctx, true)
			}
			wall := time.Since(start) / time.Duration(b.N)
			cpu := (cpuNow() - cpu0) / time.Duration(b.N)
			b.StopTimer()
			// An untouched ruleset must verify: a pass that found drift (or
			// could not open the namespaces) would be measuring something else.
			mfs, err := a.reg.Gather()
			if err != nil {
				b.Fatal(err)
			}
			for _, mf := range mfs {
				switch mf.GetName() {
				case "authbridge_rules_drift_total":
					b.Fatalf("drift found in untouched namespaces: %v", mf)
				case "authbridge_pods_rules_mismatched":
					if v := mf.GetMetric()[0].GetGauge().GetValue(); v != 0 {
						b.Fatalf("%v pods mismatched in untouched namespaces", v)
					}
				}
			}
			b.ReportMetric(float64(wall.Microseconds())/1000, "ms-per-pass")
			b.ReportMetric(float64(cpu.Microseconds())/1000, "cpu-ms-per-pass")
			b.ReportMetric(100*cpu.Seconds()/30, "cpu-pct-at-30s")
		})
	}
}

func cpuNow() time.Duration {
	var self, kids unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &self)
	_ = unix.Getrusage(unix.RUSAGE_CHILDREN, &kids)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + kids.Utime.Nano() + kids.Stime.Nano())
}
