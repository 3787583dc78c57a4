package policy

import (
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
)

// agentRequests is every request message of the AgentService in
// kata-containers src/libs/protocols/protos/agent.proto at the release tag
// 4.1.0 (unchanged up to 7c6ba40c54), including the two mem-agent configs,
// which the agent checks under their message names. There is no tracing
// request in that service.
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
	"StartContainerRequest", "StatsContainerRequest",
	"TtyWinResizeRequest", "UpdateContainerRequest",
	"UpdateEphemeralMountsRequest", "UpdateInterfaceRequest",
	"UpdateRoutesRequest", "VolumeStatsRequest", "WaitProcessRequest",
	"WriteStreamRequest",
}

// restrictiveAllowed is what the restrictive policy allows unconditionally
// (with an empty input). Conditional rules (CreateSandbox, CreateContainer,
// CopyFile, UpdateEphemeralMounts, the networking updates) are tested on
// the lifecycle fixtures and their own cases.
var restrictiveAllowed = map[string]bool{
	"DestroySandboxRequest": true,
	"StartContainerRequest": true, "RemoveContainerRequest": true,
	"UpdateContainerRequest": true, "PauseContainerRequest": true,
	"ResumeContainerRequest": true, "SignalProcessRequest": true,
	"WaitProcessRequest": true, "StatsContainerRequest": true,
	"GetMetricsRequest": true, "GetOOMEventRequest": true,
	"GuestDetailsRequest": true, "OnlineCPUMemRequest": true,
	"MemHotplugByProbeRequest": true, "MemAgentMemcgConfig": true,
	"MemAgentCompactConfig":                 true,
	"RemoveStaleVirtiofsShareMountsRequest": true,
	"ListInterfacesRequest":                 true, "ListRoutesRequest": true,
	"ReadStreamRequest": true,
}

// presetOpens is what each preset allows on top of the restrictive policy,
// presetCloses what it denies that the restrictive policy allows.
var (
	presetOpens = map[string][]string{
		PresetAllowExec: {"ExecProcessRequest", "WriteStreamRequest", "CloseStdinRequest", "TtyWinResizeRequest"},
	}
	presetCloses = map[string][]string{
		PresetDenyLogs: {"ReadStreamRequest"},
	}
)

// conditional are allowed for the runtimes' requests (the lifecycle
// fixtures) and nothing else.
var conditional = map[string]bool{
	"CreateSandboxRequest": true, "CreateContainerRequest": true,
	"UpdateEphemeralMountsRequest": true, "UpdateInterfaceRequest": true,
	"UpdateRoutesRequest": true, "AddARPNeighborsRequest": true,
}

// Realistic ids: containerd's 64-hex container/sandbox ids and the 16-hex
// random part the Kata runtime puts into shared file names.
const (
	sandboxID = "9f3a4c7e0b1d2e5f6a7b8c9d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b"
	appID     = "2b7e151628aed2a6abf7158809cf4f3c762e7160f38b4da56a784d9045190cfe"
	rnd16     = "3f8a1c2b9d4e5f60"
	shared    = "/run/kata-containers/shared/containers/"
)

func TestEveryRequestDecidedPerPreset(t *testing.T) {
	for _, name := range Presets {
		src, err := Preset(name)
		if err != nil {
			t.Fatal(err)
		}
		opens, closes := map[string]bool{}, map[string]bool{}
		for _, r := range presetOpens[name] {
			opens[r] = true
		}
		for _, r := range presetCloses[name] {
			closes[r] = true
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
				want := (restrictiveAllowed[req] || conditional[req] || opens[req]) && !closes[req]
				if got != want {
					t.Errorf("%s (realistic input) = %v, want %v", req, got, want)
				}
				// A conditional rule must not hold for a request without
				// the fields it checks.
				if conditional[req] && !opens[req] {
					if got, _ := evalRule(t, src, req, map[string]any{}); got {
						t.Errorf("%s with an empty input = true, want false", req)
					}
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
	for _, req := range []string{"ExecProcessRequest", "WriteStreamRequest", "CloseStdinRequest", "TtyWinResizeRequest", "SetPolicyRequest", "GetDiagnosticDataRequest", "AddSwapRequest", "AddSwapPathRequest", "SetIPTablesRequest", "GetIPTablesRequest"} {
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
	const dir = shared
	hosts := appID + "-" + rnd16 + "-hosts"
	cm := appID + "-" + rnd16 + "-config"
	sym := func(target string) *string { return &target }
	cases := []struct {
		name    string
		path    string
		typ     string
		target  *string
		allowed bool
	}{
		// The shapes the Kata runtime writes (genpolicy's sfprefix).
		{"hosts file", dir + hosts, "Regular", nil, true},
		{"resolv.conf of the sandbox", dir + sandboxID + "-" + rnd16 + "-resolv.conf", "Regular", nil, true},
		{"termination-log", dir + appID + "-" + rnd16 + "-termination-log", "Regular", nil, true},
		{"configmap dir", dir + cm + "/..2026_08_01_10_00_00.123", "Directory", nil, true},
		{"configmap file", dir + cm + "/..2026_08_01_10_00_00.123/app.yaml", "Regular", nil, true},
		{"atomic writer ..data symlink", dir + cm + "/..data", "Symlink", sym("..2026_08_01_10_00_00.123"), true},
		{"atomic writer key symlink", dir + cm + "/app.yaml", "Symlink", sym("..data/app.yaml"), true},
		{"passthrough", dir + "passthrough/" + hosts, "Regular", nil, true},
		{"watchable", dir + "watchable/" + cm + "/..data", "Symlink", sym("..2026_08_01_10_00_00.123"), true},
		{"passthrough watchable", dir + "passthrough/watchable/" + cm + "/app.yaml", "Regular", nil, true},
		// A running container's root filesystem: exec by another route.
		{"container rootfs binary", dir + appID + "/rootfs/usr/bin/app", "Regular", nil, false},
		{"container rootfs dir", dir + appID + "/rootfs/usr/bin", "Directory", nil, false},
		{"sandbox rootfs", dir + sandboxID + "/rootfs/pause", "Regular", nil, false},
		{"passthrough rootfs", dir + "passthrough/" + appID + "/rootfs/bin/sh", "Regular", nil, false},
		{"rootfs via shared-file prefix and ..", dir + hosts + "/../" + appID + "/rootfs/bin/sh", "Regular", nil, false},
		{"short id", dir + "6b1f0c8e-" + rnd16 + "-hosts", "Regular", nil, false},
		{"no random part", dir + appID + "-hosts", "Regular", nil, false},
		{"watchable before passthrough", dir + "watchable/passthrough/" + hosts, "Regular", nil, false},
		{"empty name", dir + appID + "-" + rnd16 + "-", "Regular", nil, false},
		{"empty component", dir + cm + "//app.yaml", "Regular", nil, false},
		{"outside: agent binary", "/usr/bin/kata-agent", "Regular", nil, false},
		{"outside: policy file", "/etc/kata-opa/default-policy.rego", "Regular", nil, false},
		{"outside: sibling prefix", "/run/kata-containers/shared/containersX/" + hosts, "Regular", nil, false},
		{"outside: sandbox dir", "/run/kata-containers/sandbox/" + hosts, "Regular", nil, false},
		{"the shared dir itself", dir, "Directory", nil, false},
		{"traversal", dir + hosts + "/../../../../etc/kata-opa/default-policy.rego", "Regular", nil, false},
		{"traversal at the end", dir + cm + "/..", "Directory", nil, false},
		{"absolute symlink", dir + cm + "/key", "Symlink", sym("/etc/shadow"), false},
		{"symlink escaping", dir + cm + "/key", "Symlink", sym("../../../../etc/shadow"), false},
		{"top-level symlink", dir + hosts, "Symlink", sym("..data/key"), false},
		{"top-level symlink under watchable", dir + "watchable/" + hosts, "Symlink", sym("..data/key"), false},
		{"unknown file type", dir + hosts, "Unknown", nil, false},
	}
	for _, name := range Presets {
		src, _ := Preset(name)
		for _, c := range cases {
			in := map[string]any{"path": c.path, "file_type": c.typ, "symlink_target": c.target,
				"file_size": 120, "file_mode": 0o100644, "dir_mode": 0o40750, "uid": 0, "gid": 0, "offset": 0, "data": "MTI3LjAuMC4xIGxvY2FsaG9zdAo="}
			if c.target == nil {
				in["symlink_target"] = ""
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

// Every rule the presets define is a request of agent.proto (or the debug
// switch): a rule for a request that does not exist hides a typo or a stale
// copy, like the tracing requests this policy once named.
func TestRulesAreAgentRequests(t *testing.T) {
	known := map[string]bool{"AllowRequestsFailingPolicy": true}
	for _, r := range agentRequests {
		known[r] = true
	}
	for _, name := range Presets {
		src, _ := Preset(name)
		mod, err := ast.ParseModuleWithOpts(name+".rego", string(src), ast.ParserOptions{RegoVersion: ast.RegoV1})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range mod.Rules {
			n := r.Head.Name.String()
			if n == "" {
				n = r.Head.Ref().String()
			}
			if n[0] >= 'A' && n[0] <= 'Z' && !known[n] {
				t.Errorf("%s: rule %s is not a request of agent.proto (kata-containers 4.1.0)", name, n)
			}
		}
	}
}

// The agent's regorus engine parses Rego v1 (kata 4.1.0's pinned 0.9.1)
// and has only some of OPA's builtins: every shipped preset must stay
// inside that subset, or the agent refuses the policy and no pod starts.
func TestPresetsInRegorusSubset(t *testing.T) {
	for _, name := range Presets {
		src, _ := Preset(name)
		if err := RegorusSubset(name+".rego", src); err != nil {
			t.Error(err)
		}
	}
}

// The subset check itself: builtins regorus lacks with the agent's
// features are found wherever they are called, the policy's own functions
// and Rego's operators are not.
func TestRegorusSubsetFindsMissingBuiltins(t *testing.T) {
	const head = "package agent_policy\n\nimport rego.v1\n\n"
	cases := map[string]struct {
		body string
		bad  []string
	}{
		"net":             {`default UpdateRoutesRequest := false` + "\n" + `UpdateRoutesRequest if { every r in input.routes.Routes { not net.cidr_contains("127.0.0.0/8", r.source) } }`, []string{"net.cidr_contains"}},
		"time in a term":  {`GetMetricsRequest if { x := [time.now_ns()]; count(x) == 1 }`, []string{"time.now_ns"}},
		"glob and hex":    {`CopyFileRequest if { glob.match("/run/*", ["/"], input.path); hex.encode("a") == "61" }`, []string{"glob.match", "hex.encode"}},
		"json schema":     {`CopyFileRequest if json.match_schema(input, {})[0]`, []string{"json.match_schema"}},
		"own and allowed": {`f(x) if regex.match("^a", x)` + "\n" + `CopyFileRequest if { f(input.path); bits.and(1, 3) == 1; "a" in {"a"}; object.get(input, "k", 0) == 0 }`, nil},
	}
	for name, c := range cases {
		err := RegorusSubset(name, []byte(head+c.body+"\n"))
		if len(c.bad) == 0 {
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%s: no error, want one naming %v", name, c.bad)
			continue
		}
		for _, b := range c.bad {
			if !strings.Contains(err.Error(), b) {
				t.Errorf("%s: error %q does not name %s", name, err, b)
			}
		}
	}
}

func TestUnknownPreset(t *testing.T) {
	if _, err := Preset("allow-all"); err == nil {
		t.Fatal("Preset(allow-all) succeeded, want error naming the allowed presets")
	}
	if _, err := Preset("allow-logs"); err == nil || !strings.Contains(err.Error(), "deny-logs") {
		t.Fatalf("Preset(allow-logs) = %v, want an error saying logs are allowed by default and naming deny-logs", err)
	}
}
