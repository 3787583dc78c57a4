package policy

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// agentRequests is every request message of the AgentService in
// kata-containers src/libs/protocols/protos/agent.proto at
// 7c6ba40c54ea29b459b4997cff948caaba4e658b (4.1.0-23), plus the two
// mem-agent configs, which the agent checks under their message names.
var agentRequests = []string{
	"AddARPNeighborsRequest", "AddSwapPathRequest", "AddSwapRequest",
	"CloseStdinRequest", "CopyFileRequest", "CreateContainerRequest",
	"CreateSandboxRequest", "DestroySandboxRequest", "ExecProcessRequest",
	"GetDiagnosticDataRequest", "GetIPTablesRequest", "GetMetricsRequest",
	"GetOOMEventRequest", "GuestDetailsRequest", "ListInterfacesRequest",
	"ListRoutesRequest", "MemAgentCompactConfig", "MemAgentMemcgConfig",
	"MemHotplugByProbeRequest", "OnlineCPUMemRequest", "PauseContainerRequest",
	"ReadStreamRequest", "RemoveContainerRequest",
	"RemoveStaleVirtiofsShareMountsRequest", "ReseedRandomDevRequest",
	"ResizeVolumeRequest", "ResumeContainerRequest", "SetGuestDateTimeRequest",
	"SetIPTablesRequest", "SetPolicyRequest", "SignalProcessRequest",
	"StartContainerRequest", "StartTracingRequest", "StatsContainerRequest",
	"StopTracingRequest", "TtyWinResizeRequest", "UpdateContainerRequest",
	"UpdateEphemeralMountsRequest", "UpdateInterfaceRequest",
	"UpdateRoutesRequest", "VolumeStatsRequest", "WaitProcessRequest",
	"WriteStreamRequest",
}

// restrictiveAllowed is the lifecycle set issue 4 asks to keep working.
// CopyFileRequest is conditional and tested on its own.
var restrictiveAllowed = map[string]bool{
	"CreateSandboxRequest": true, "DestroySandboxRequest": true,
	"CreateContainerRequest": true, "StartContainerRequest": true,
	"RemoveContainerRequest": true, "UpdateContainerRequest": true,
	"PauseContainerRequest": true, "ResumeContainerRequest": true,
	"SignalProcessRequest": true, "WaitProcessRequest": true,
	"StatsContainerRequest": true, "GetMetricsRequest": true,
	"GetOOMEventRequest": true, "GuestDetailsRequest": true,
	"OnlineCPUMemRequest": true, "MemHotplugByProbeRequest": true,
	"MemAgentMemcgConfig": true, "MemAgentCompactConfig": true,
	"RemoveStaleVirtiofsShareMountsRequest": true,
	"UpdateInterfaceRequest":                true, "UpdateRoutesRequest": true,
	"ListInterfacesRequest": true, "ListRoutesRequest": true,
	"AddARPNeighborsRequest": true,
}

// presetOpens is what each preset allows on top of the restrictive policy.
var presetOpens = map[string][]string{
	PresetRestrictive: nil,
	PresetAllowLogs:   {"ReadStreamRequest"},
	PresetAllowExec:   {"ExecProcessRequest", "ReadStreamRequest", "WriteStreamRequest", "CloseStdinRequest", "TtyWinResizeRequest"},
}

// realistic inputs, shaped like the agent's serde_json of the protobuf
// messages (field names as in agent.proto).
var inputs = map[string]string{
	"CreateContainerRequest": `{"container_id":"6b1f0c8e","exec_id":"6b1f0c8e","string_user":null,"devices":[],"storages":[],
		"OCI":{"Version":"1.1.0","Process":{"Terminal":false,"User":{"UID":65535,"GID":65535},"Args":["/pause"],"Env":["PATH=/usr/bin"],"Cwd":"/"},
		"Root":{"Path":"/run/kata-containers/shared/containers/6b1f0c8e/rootfs","Readonly":true},"Hostname":"","Mounts":[],
		"Annotations":{"io.kubernetes.cri.container-type":"sandbox","io.kubernetes.cri.sandbox-name":"web-0","io.kubernetes.cri.sandbox-namespace":"default"}},
		"sandbox_pidns":false,"shared_mounts":[]}`,
	"ExecProcessRequest": `{"container_id":"6b1f0c8e","exec_id":"e1","string_user":null,
		"process":{"Terminal":true,"User":{"UID":0,"GID":0},"Args":["/bin/sh"],"Env":["PATH=/usr/bin"],"Cwd":"/"}}`,
	"ReadStreamRequest":    `{"container_id":"6b1f0c8e","exec_id":"","len":32768}`,
	"WriteStreamRequest":   `{"container_id":"6b1f0c8e","exec_id":"e1","data":"bHMK"}`,
	"SetPolicyRequest":     `{"policy":"package agent_policy\ndefault ExecProcessRequest := true\n"}`,
	"SignalProcessRequest": `{"container_id":"6b1f0c8e","exec_id":"","signal":15}`,
	"AddSwapRequest":       `{"PCIPath":[2,3]}`,
}

func evalRule(t *testing.T, src []byte, rule string, input any) (allowed bool, defined bool) {
	t.Helper()
	r := rego.New(
		rego.Query("data.agent_policy."+rule),
		rego.Module("policy.rego", string(src)),
		rego.SetRegoVersion(ast.RegoV1),
		rego.Input(input),
	)
	rs, err := r.Eval(context.Background())
	if err != nil {
		t.Fatalf("eval %s: %v", rule, err)
	}
	if len(rs) == 0 {
		return false, false
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		t.Fatalf("eval %s: unexpected result shape %v", rule, rs)
	}
	b, ok := rs[0].Expressions[0].Value.(bool)
	if !ok {
		t.Fatalf("eval %s: result %v is not a bool (the agent would fail the request)", rule, rs[0].Expressions[0].Value)
	}
	return b, true
}

func inputFor(t *testing.T, rule string) any {
	t.Helper()
	s, ok := inputs[rule]
	if !ok {
		s = `{}`
	}
	var v any
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		t.Fatalf("input %s: %v", rule, err)
	}
	return v
}

func TestEveryRequestDecidedPerPreset(t *testing.T) {
	for _, name := range Presets {
		src, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		opens := map[string]bool{}
		for _, r := range presetOpens[name] {
			opens[r] = true
		}
		t.Run(name, func(t *testing.T) {
			for _, req := range agentRequests {
				if req == "CopyFileRequest" {
					continue
				}
				got, defined := evalRule(t, src, req, inputFor(t, req))
				if !defined {
					t.Errorf("%s: rule undefined; every agent request must be named so the agent answers \"blocked by policy\" rather than an internal error", req)
					continue
				}
				want := restrictiveAllowed[req] || opens[req]
				if got != want {
					t.Errorf("%s = %v, want %v", req, got, want)
				}
			}
			if allowed, _ := evalRule(t, src, "AllowRequestsFailingPolicy", map[string]any{}); allowed {
				t.Error("AllowRequestsFailingPolicy must be false")
			}
		})
	}
}

func TestDeniedByIssue(t *testing.T) {
	src := Restrictive()
	for _, req := range []string{"ExecProcessRequest", "ReadStreamRequest", "WriteStreamRequest", "CloseStdinRequest", "TtyWinResizeRequest", "SetPolicyRequest", "GetDiagnosticDataRequest", "AddSwapRequest", "AddSwapPathRequest", "SetIPTablesRequest", "GetIPTablesRequest"} {
		if got, _ := evalRule(t, src, req, inputFor(t, req)); got {
			t.Errorf("restrictive: %s allowed, want denied", req)
		}
	}
}

func TestUnknownRequestDenied(t *testing.T) {
	for _, name := range Presets {
		src, _ := Preset(name)
		for _, req := range []string{"PullImageRequest", "FutureRequest", "ExecProcessRequestX"} {
			got, defined := evalRule(t, src, req, map[string]any{})
			if got || defined {
				t.Errorf("%s: unknown %s = (%v, defined %v), want undefined (the agent refuses undefined requests)", name, req, got, defined)
			}
		}
	}
}

func TestCopyFile(t *testing.T) {
	const dir = "/run/kata-containers/shared/containers/"
	sym := func(target string) *string { return &target }
	cases := []struct {
		name    string
		path    string
		typ     string
		target  *string
		allowed bool
	}{
		{"hosts file", dir + "6b1f0c8e-2f5c1a7d-hosts", "Regular", nil, true},
		{"resolv.conf", dir + "6b1f0c8e-9a0b-resolv.conf", "Regular", nil, true},
		{"configmap dir", dir + "6b1f0c8e-cm-config/..2026_08_01_10_00_00.123", "Directory", nil, true},
		{"configmap file", dir + "6b1f0c8e-cm-config/..2026_08_01_10_00_00.123/app.yaml", "Regular", nil, true},
		{"atomic writer ..data symlink", dir + "6b1f0c8e-cm-config/..data", "Symlink", sym("..2026_08_01_10_00_00.123"), true},
		{"atomic writer key symlink", dir + "6b1f0c8e-cm-config/app.yaml", "Symlink", sym("..data/app.yaml"), true},
		{"outside: agent binary", "/usr/bin/kata-agent", "Regular", nil, false},
		{"outside: policy file", "/etc/kata-opa/default-policy.rego", "Regular", nil, false},
		{"outside: sibling prefix", "/run/kata-containers/shared/containersX/a", "Regular", nil, false},
		{"outside: sandbox dir", "/run/kata-containers/sandbox/x", "Regular", nil, false},
		{"the shared dir itself", dir, "Directory", nil, false},
		{"traversal", dir + "../../../etc/kata-opa/default-policy.rego", "Regular", nil, false},
		{"traversal in the middle", dir + "a/../b", "Regular", nil, false},
		{"traversal at the end", dir + "a/..", "Directory", nil, false},
		{"absolute symlink", dir + "cm/key", "Symlink", sym("/etc/shadow"), false},
		{"symlink escaping", dir + "cm/key", "Symlink", sym("../../../../etc/shadow"), false},
		{"top-level symlink", dir + "key", "Symlink", sym("..data/key"), false},
		{"unknown file type", dir + "fifo", "Unknown", nil, false},
	}
	for _, name := range Presets {
		src, _ := Preset(name)
		for _, c := range cases {
			in := map[string]any{"path": c.path, "file_type": c.typ, "symlink_target": c.target,
				"file_size": 120, "file_mode": 0o100644, "dir_mode": 0o40750, "uid": 0, "gid": 0, "offset": 0}
			if c.target == nil {
				in["symlink_target"] = nil
			}
			got, defined := evalRule(t, src, "CopyFileRequest", in)
			if !defined {
				t.Fatalf("%s: CopyFileRequest undefined", name)
			}
			if got != c.allowed {
				t.Errorf("%s: CopyFile %s (%s %q) = %v, want %v", name, c.name, c.typ, c.path, got, c.allowed)
			}
		}
	}
}

// The agent's regorus engine reads Rego v0 unless a module imports rego.v1;
// the shipped files must parse both ways.
func TestParsesAsV0AndV1(t *testing.T) {
	for _, name := range Presets {
		src, _ := Preset(name)
		for _, v := range []ast.RegoVersion{ast.RegoV0, ast.RegoV1} {
			if _, err := ast.ParseModuleWithOpts(name+".rego", string(src), ast.ParserOptions{RegoVersion: v}); err != nil {
				t.Errorf("%s as %v: %v", name, v, err)
			}
		}
	}
}

func TestUnknownPreset(t *testing.T) {
	if _, err := Preset("allow-all"); err == nil {
		t.Fatal("Preset(allow-all) succeeded, want error naming the allowed presets")
	}
}
