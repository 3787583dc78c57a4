package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

var (
	v4Only = []redirect.Family{redirect.IPv4}
	dual   = []redirect.Family{redirect.IPv4, redirect.IPv6}
)

// The real sysctl of a real network namespace: IPv6 enabled -> both
// families, disabled -> IPv4 only. /proc/sys/net shows the netns of the
// reader, which is why the agent (hostNetwork) reads its own /proc.
func TestProbeFamiliesFromKernel(t *testing.T) {
	testenv.Root(t, "network namespaces")
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.Close(); _ = testutils.UnmountNS(n) }()
	for _, tc := range []struct {
		set  string
		want []redirect.Family
	}{{"0", dual}, {"1", v4Only}, {"0", dual}} {
		var got []redirect.Family
		err := n.Do(func(ns.NetNS) error {
			if err := os.WriteFile(DefaultIPv6DisabledPath, []byte(tc.set), 0o644); err != nil {
				return err
			}
			var err error
			got, err = ProbeFamilies(DefaultIPv6DisabledPath)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Fatalf("disable_ipv6=%s: families %v, want %v", tc.set, got, tc.want)
		}
	}
}

func TestProbeFamiliesFiles(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		content string // "-" = no file (kernel without IPv6)
		want    []redirect.Family
		wantErr bool
	}{
		{"0\n", dual, false},
		{"1\n", v4Only, false},
		{"-", v4Only, false},
		{"yes\n", v4Only, true},
	} {
		p := filepath.Join(dir, "disable_ipv6-"+tc.content)
		if tc.content != "-" {
			os.WriteFile(p, []byte(tc.content), 0o644)
		}
		got, err := ProbeFamilies(p)
		if !reflect.DeepEqual(got, tc.want) || (err != nil) != tc.wantErr {
			t.Errorf("%q: %v, %v", tc.content, got, err)
		}
	}
	if got, err := ProbeFamilies(""); !reflect.DeepEqual(got, v4Only) || err != nil {
		t.Errorf("no path: %v %v", got, err)
	}
}

// The agent probes for the host's families and records them in the
// last-probe annotation.
func TestProbeFamiliesRecorded(t *testing.T) {
	cs := admin(t)
	node := "node-families"
	createNode(t, cs, node)
	sysctl := filepath.Join(t.TempDir(), "disable_ipv6")
	os.WriteFile(sysctl, []byte("0\n"), 0o644)
	h := newAgent(t, cs, node, testConfig(t), func(o *Options) { o.IPv6DisabledPath = sysctl })
	h.start(t)
	h.waitReady(t)
	h.probe.mu.Lock()
	got := h.probe.families
	h.probe.mu.Unlock()
	if !reflect.DeepEqual(got, dual) {
		t.Fatalf("probed families %v, want %v", got, dual)
	}
	annFamilies := func() []redirect.Family {
		_, ann := nodeLabels(t, cs, node)
		var lp lastProbe
		if err := json.Unmarshal([]byte(ann[AnnotationLastProbe]), &lp); err != nil {
			t.Fatalf("last-probe %q: %v", ann[AnnotationLastProbe], err)
		}
		return lp.Families
	}
	if f := annFamilies(); !reflect.DeepEqual(f, dual) {
		t.Fatalf("annotation families %v", f)
	}
	// IPv6 switched off on the host: the next probe is IPv4 only.
	os.WriteFile(sysctl, []byte("1\n"), 0o644)
	h.a.ProbeOnce(context.Background())
	waitFor(t, 10*time.Second, func() (bool, string) {
		f := annFamilies()
		return reflect.DeepEqual(f, v4Only), "annotation families after disabling IPv6"
	})
}
