package cni_test

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/decision"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// BenchmarkDecision measures an ADD's decision (its inputs, then
// podinfo.Decide) the two ways the plugin gets them, side by side: from
// the node agent's cache over the decision socket, and from the API server
// with the plugin's own kubeconfig (a fresh client per ADD, as each plugin
// process builds one: kubeconfig load, TLS handshake, two GETs). It
// reports p50/p99 in ms and the pod/ConfigMap GETs per ADD the API server
// counted (apiserver_request_total).
func BenchmarkDecision(b *testing.B) {
	e := newEnv(b, envOpts{})
	node := "bench-decision-node"
	nsName := uniqueNS("benchdec")
	uid := createPod(b, nsName, "agent", nil, true, onNode(node))
	createConfigMap(b, nsName, "egressEnforcement: enforce-redirect\n")
	e.serveAgent(node)
	policy := config.Policy{}.WithDefaults()
	state := &nodestate.State{Results: probeResults(b)}
	kubeconfig := filepath.Join(b.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, apiserver.Shared(b).AdminKubeconfig(), 0o600); err != nil {
		b.Fatal(err)
	}
	decide := func(b *testing.B, pod *corev1.Pod, nsCfg podinfo.NamespaceConfig) {
		d, err := podinfo.Decide(pod, nsCfg, policy, state, "")
		if err != nil || d.Mode != podmode.EnforceRedirect {
			b.Fatalf("decision %+v %v", d, err)
		}
	}
	viaAgent := func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r, err := decision.Query(ctx, filepath.Join(e.stateDir, decision.SocketName), decision.Request{Namespace: nsName, Name: "agent", UID: uid})
		if err != nil || r.Error != "" || r.Source != decision.SourceCache {
			b.Fatalf("agent answer %+v %v", r, err)
		}
		nsCfg, err := podinfo.ParseNamespaceConfig(nsName, []byte(*r.NamespaceConfig))
		if err != nil {
			b.Fatal(err)
		}
		decide(b, r.Pod, nsCfg)
	}
	viaAPI := func(b *testing.B) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		src, err := podinfo.NewKubeSource(kubeconfig, 0)
		if err != nil {
			b.Fatal(err)
		}
		pod, err := src.GetPod(ctx, nsName, "agent")
		if err != nil {
			b.Fatal(err)
		}
		nsCfg, err := src.GetNamespaceConfig(ctx, nsName)
		if err != nil {
			b.Fatal(err)
		}
		decide(b, pod, nsCfg)
	}
	for _, c := range []struct {
		name string
		run  func(*testing.B)
	}{{"via-agent-socket", viaAgent}, {"via-api-server", viaAPI}} {
		b.Run(c.name, func(b *testing.B) {
			before := settleReads(b)
			durs := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				c.run(b)
				durs = append(durs, time.Since(start))
			}
			b.StopTimer()
			reads := settleReads(b) - before
			sort.Slice(durs, func(i, j int) bool { return durs[i] < durs[j] })
			pct := func(q float64) float64 { return float64(durs[int(q*float64(len(durs)-1))].Microseconds()) / 1000 }
			b.ReportMetric(pct(0.5), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(reads/float64(b.N), "api-reads/ADD")
		})
	}
}
