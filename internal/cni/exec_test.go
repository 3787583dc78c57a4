package cni_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/testutils"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
)

// execPlugin runs the built binary like a runtime does and returns its exit
// error, stdout and stderr.
func execPlugin(t *testing.T, cmd, netns, args string, stdin []byte) (error, []byte, string) {
	t.Helper()
	binDir := pluginDir(t)
	c := exec.Command(filepath.Join(binDir, "authbridge-cni"))
	c.Env = []string{"CNI_COMMAND=" + cmd, "CNI_CONTAINERID=ctr1", "CNI_NETNS=" + netns, "CNI_IFNAME=eth0", "CNI_PATH=" + binDir, "CNI_ARGS=" + args}
	c.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	err := c.Run()
	return err, out.Bytes(), errb.String()
}

// TestBadInputs: every bad input gives a CNI error object on stdout, a
// non-zero exit and no panic.
func TestBadInputs(t *testing.T) {
	testenv.Root(t, "network namespaces")
	dir := t.TempDir()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.Close(); _ = testutils.UnmountNS(n) }()
	base := map[string]any{"cniVersion": "1.1.0", "name": "net", "type": "authbridge-cni",
		"logFile": filepath.Join(dir, "log"), "stateDir": filepath.Join(dir, "state"), "kubeconfig": filepath.Join(dir, "kc")}
	prev := map[string]any{"cniVersion": "1.1.0", "interfaces": []any{map[string]any{"name": "eth0", "sandbox": n.Path()}},
		"ips": []any{map[string]any{"address": "10.1.0.2/24", "interface": 0}}}
	with := func(kv ...any) []byte {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			if kv[i+1] == nil {
				delete(m, kv[i].(string))
			} else {
				m[kv[i].(string)] = kv[i+1]
			}
		}
		b, _ := json.Marshal(m)
		return b
	}
	podArgs := "IgnoreUnknown=1;K8S_POD_NAMESPACE=team;K8S_POD_NAME=agent"
	tests := []struct {
		name, cmd, netns, args string
		stdin                  []byte
		want                   []string
	}{
		{"malformed JSON", "ADD", n.Path(), podArgs, []byte(`{"name":`), []string{""}},
		{"not an object", "ADD", n.Path(), podArgs, []byte(`42`), []string{""}},
		{"unknown field", "ADD", n.Path(), podArgs, with("prevResult", prev, "proxyUid", 1), []string{`unknown field "proxyUid"`}},
		{"wrong type", "ADD", n.Path(), podArgs, with("prevResult", prev, "backends", "nftables"), []string{"field backends", "a list of string"}},
		{"cooperative without acknowledgement", "ADD", n.Path(), podArgs, with("prevResult", prev, "allowCooperative", true), []string{"acknowledgeCooperativeRisks", "security-model-v2"}},
		{"bad prevResult", "ADD", n.Path(), podArgs, with("prevResult", map[string]any{"cniVersion": "1.1.0", "ips": []any{map[string]any{"address": "not-an-ip"}}}), []string{"prevResult"}},
		{"missing netns", "ADD", "/var/run/netns/authbridge-does-not-exist", podArgs, with("prevResult", prev), []string{"authbridge-does-not-exist"}},
		{"missing kubeconfig file", "ADD", n.Path(), podArgs, with("prevResult", prev), []string{"field kubeconfig", filepath.Join(dir, "kc")}},
		{"no kubeconfig set", "ADD", n.Path(), podArgs, with("prevResult", prev, "kubeconfig", nil), []string{"field kubeconfig: not set"}},
		{"malformed CNI_ARGS", "ADD", n.Path(), "garbage", with("prevResult", prev), []string{"CNI_ARGS"}},
		{"malformed DEL", "DEL", n.Path(), podArgs, []byte(`{{`), []string{""}},
		{"malformed CHECK", "CHECK", n.Path(), podArgs, []byte(`{"cniVersion":"1.1.0","name":"n","type":"authbridge-cni","nope":1}`), []string{"nope"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err, out, stderr := execPlugin(t, tc.cmd, tc.netns, tc.args, tc.stdin)
			if err == nil {
				t.Fatalf("exit 0; stdout %s", out)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Fatalf("panic: %s", stderr)
			}
			var te types.Error
			if jerr := json.Unmarshal(out, &te); jerr != nil || te.Code == 0 || te.Msg == "" {
				t.Fatalf("stdout is not a CNI error object: %s (%v)", out, jerr)
			}
			full := te.Msg + " " + te.Details
			for _, w := range tc.want {
				if !strings.Contains(full, w) {
					t.Fatalf("error %q does not mention %q", full, w)
				}
			}
		})
	}
}

// TestPassThrough: a container that is not a Kubernetes pod gets prevResult
// back unchanged, in each supported version.
func TestPassThrough(t *testing.T) {
	testenv.Root(t, "network namespaces")
	dir := t.TempDir()
	n, err := testutils.NewNS()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { n.Close(); _ = testutils.UnmountNS(n) }()
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		prev := map[string]any{"cniVersion": v,
			"interfaces": []any{map[string]any{"name": "eth0", "mac": "0a:58:0a:01:00:02", "sandbox": n.Path()}},
			"ips":        []any{map[string]any{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0}},
			"routes":     []any{map[string]any{"dst": "0.0.0.0/0"}},
			"dns":        map[string]any{"nameservers": []any{"10.96.0.10"}}}
		if v == "0.4.0" {
			prev["ips"].([]any)[0].(map[string]any)["version"] = "4"
		}
		conf := map[string]any{"cniVersion": v, "name": "net", "type": "authbridge-cni", "prevResult": prev,
			"logFile": filepath.Join(dir, "log"), "stateDir": filepath.Join(dir, "state")}
		in, _ := json.Marshal(conf)
		err, out, stderr := execPlugin(t, "ADD", n.Path(), "IgnoreUnknown=1", in)
		if err != nil {
			t.Fatalf("%s: %v: %s %s", v, err, out, stderr)
		}
		var got, want map[string]any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("%s: stdout %s: %v", v, out, err)
		}
		wb, _ := json.Marshal(prev)
		_ = json.Unmarshal(wb, &want)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: result changed:\n got %s\nwant %s", v, out, wb)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "containers")); !os.IsNotExist(err) {
		t.Fatalf("a non-pod container left state: %v", err)
	}
}
