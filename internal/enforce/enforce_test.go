package enforce

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

func testPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "agent", UID: "u-1"},
		Spec: corev1.PodSpec{DNSPolicy: corev1.DNSClusterFirst}}
}

func policy(t *testing.T) config.Policy {
	t.Helper()
	a, err := config.ParseAgent([]byte("clusterDNS: [10.96.0.10]\n"))
	if err != nil {
		t.Fatal(err)
	}
	return a.Policy
}

func newNS(t *testing.T) ns.NetNS {
	t.Helper()
	testenv.Root(t, "network namespaces")
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close(); _ = testutils.UnmountNS(n) })
	return n
}

// TestProgramVerifyReapply: on each backend, Program writes rules that
// verify and a record that names them; the drift the agent must catch (the
// nat table flushed, or another rule put ahead of the jump) fails Verify
// naming what differs, and Reapply with the record's backend and spec makes
// it verify again.
func TestProgramVerifyReapply(t *testing.T) {
	drifts := map[string][][]string{
		redirect.BackendNFTables:       {{"nft", "flush", "table", "ip", "authbridge"}},
		redirect.BackendIPTablesNFT:    {{"iptables-nft", "-t", "nat", "-I", "OUTPUT", "1", "-j", "ACCEPT"}},
		redirect.BackendIPTablesLegacy: {{"iptables-legacy", "-t", "nat", "-I", "OUTPUT", "1", "-j", "ACCEPT"}},
	}
	for _, backend := range redirect.AllBackends {
		t.Run(backend, func(t *testing.T) {
			n := newNS(t)
			dir := t.TempDir()
			res, err := Program(Request{Pod: testPod(), Policy: policy(t), Backends: []string{backend},
				AddrFamilies: []redirect.Family{redirect.IPv4}, NetNS: n, NewBackend: redirect.New, StateDir: dir,
				Record: containerstate.Record{ContainerID: "c1", Namespace: "team", Pod: "agent", PodUID: "u-1", Mode: podmode.EnforceRedirect}})
			if err != nil {
				t.Fatal(err)
			}
			rec, err := containerstate.Read(dir, "c1")
			if err != nil || rec == nil || rec.Backend != backend || rec.Spec == nil || len(rec.Spec.Resolvers) != 1 {
				t.Fatalf("record %+v, %v; want backend %s and the spec with the cluster DNS resolver", rec, err, backend)
			}
			if res.Backend != backend || !rec.Spec.Has(redirect.IPv6) {
				t.Errorf("result %+v; want %s and IPv6 too (enabled in the netns)", res, backend)
			}
			if err := Verify(n, redirect.New, *rec); err != nil {
				t.Fatalf("fresh rules: %v", err)
			}
			for _, d := range drifts[backend] {
				if out, err := redirecttest.Output(n, d[0], d[1:]...); err != nil {
					t.Fatalf("%v: %v: %s", d, err, out)
				}
				err := Verify(n, redirect.New, *rec)
				if err == nil {
					t.Fatalf("after %v the rules still verify", d)
				}
				t.Logf("%s drift %v: %v", backend, d, err)
				if err := Reapply(n, redirect.New, *rec); err != nil {
					t.Fatalf("reapply: %v", err)
				}
				if err := Verify(n, redirect.New, *rec); err != nil {
					t.Fatalf("after reapply: %v", err)
				}
			}
		})
	}
}

// TestProgramFailsClosed: a record that cannot be written leaves no rules
// (DEL and the drift check would not know them); an incomplete record is
// refused by Verify and Reapply, naming the pod.
func TestProgramFailsClosed(t *testing.T) {
	n := newNS(t)
	stateFile := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(stateFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Program(Request{Pod: testPod(), Policy: policy(t), Backends: []string{redirect.BackendNFTables},
		AddrFamilies: []redirect.Family{redirect.IPv4}, NetNS: n, NewBackend: redirect.New, StateDir: stateFile,
		Record: containerstate.Record{ContainerID: "c1", Mode: podmode.EnforceRedirect}})
	if err == nil {
		t.Fatal("Program succeeded without a record")
	}
	if out, _ := redirecttest.Output(n, "nft", "list", "ruleset"); strings.Contains(out, "authbridge") {
		t.Fatalf("rules left behind after the record failed:\n%s", out)
	}
	bad := containerstate.Record{ContainerID: "c2", Namespace: "team", Pod: "agent", Mode: podmode.EnforceRedirect}
	for _, f := range []func(ns.NetNS, NewBackendFunc, containerstate.Record) error{Verify, Reapply} {
		if err := f(n, redirect.New, bad); err == nil || !strings.Contains(err.Error(), "team/agent") {
			t.Errorf("incomplete record: %v", err)
		}
	}
}
