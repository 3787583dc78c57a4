package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// A lifecycle fixture (testdata/lifecycle/*.json) is what one Kata runtime
// sends the agent for one pod (a pause and an app container) from create to
// destroy, derived from the kata-containers 4.1.0 sources named in each
// step's "source" (the function that builds the request). Inputs are shaped
// like the agent's serde_json of the protobuf messages, which is what
// src/agent/policy/src/policy.rs hands the engine. "want" is the decision
// of the restrictive policy that docs/kata-secure-by-default.md promises.
type lifecycle struct {
	file          string
	Runtime       string `json:"runtime"`
	Configuration string `json:"configuration"`
	Kata          string `json:"kata"`
	Steps         []struct {
		Step    string          `json:"step"`
		Request string          `json:"request"`
		Source  string          `json:"source"`
		Want    string          `json:"want"`
		Note    string          `json:"note"`
		Input   json.RawMessage `json:"input"`
	} `json:"steps"`
}

var (
	lifecyclesOnce sync.Once
	lifecyclesData []lifecycle
	lifecyclesErr  error
)

// loadLifecycles reads the fixtures once per test binary (strictly: an
// unknown field is an error, so a typo cannot silently drop a field).
func loadLifecycles(t *testing.T) []lifecycle {
	t.Helper()
	lifecyclesOnce.Do(func() { lifecyclesData, lifecyclesErr = readLifecycles() })
	if lifecyclesErr != nil {
		t.Fatal(lifecyclesErr)
	}
	return lifecyclesData
}

func readLifecycles() ([]lifecycle, error) {
	files, err := filepath.Glob(filepath.Join("testdata", "lifecycle", "*.json"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("no lifecycle fixtures under testdata/lifecycle (%v)", err)
	}
	var out []lifecycle
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var l lifecycle
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		l.file = filepath.Base(f)
		out = append(out, l)
	}
	return out, nil
}

func decode(t *testing.T, raw []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("input: %v", err)
	}
	return v
}

// prepared caches one compiled query per (policy source, rule): compiling
// the module for every one of the few hundred evaluations is what would
// make this package slow.
var prepared sync.Map

func evalRule(t *testing.T, src []byte, rule string, input any) (allowed bool, defined bool) {
	t.Helper()
	key := rule + "\x00" + string(src)
	pq, ok := prepared.Load(key)
	if !ok {
		q, err := rego.New(
			rego.Query("data.agent_policy."+rule),
			rego.Module("policy.rego", string(src)),
			rego.SetRegoVersion(ast.RegoV1),
		).PrepareForEval(context.Background())
		if err != nil {
			t.Fatalf("prepare %s: %v", rule, err)
		}
		pq, _ = prepared.LoadOrStore(key, q)
	}
	rs, err := pq.(rego.PreparedEvalQuery).Eval(context.Background(), rego.EvalInput(input))
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

// presetWant is the decision a preset must give a lifecycle step: the
// restrictive decision, changed only for the requests the preset opens.
func presetWant(preset, request, restrictive string) bool {
	for _, r := range presetOpens[preset] {
		if r == request {
			return true
		}
	}
	for _, r := range presetCloses[preset] {
		if r == request {
			return false
		}
	}
	return restrictive == "allow"
}

// lifecycleSteps are the steps every fixture of a complete lifecycle covers
// (issue 12: create, start, stats, OOM watch, logs, exec, stop; destroy
// where the runtime sends DestroySandbox: runtime-rs stops the VM instead).
var lifecycleSteps = []string{"create", "start", "stats", "oom-watch", "logs", "exec", "stop"}

func TestLifecycles(t *testing.T) {
	for _, l := range loadLifecycles(t) {
		if l.Kata != "4.1.0" || l.Runtime == "" || l.Configuration == "" {
			t.Errorf("%s: runtime, configuration and kata (4.1.0) must be set", l.file)
		}
		steps := map[string]bool{}
		for _, s := range l.Steps {
			steps[s.Step] = true
			if s.Source == "" || (s.Want != "allow" && s.Want != "deny") {
				t.Errorf("%s: %s %s: source and want (allow|deny) must be set", l.file, s.Step, s.Request)
			}
			if s.Want == "deny" && s.Note == "" && !denyExpected[s.Request] {
				t.Errorf("%s: %s %s is denied without a note saying what the pod sees", l.file, s.Step, s.Request)
			}
		}
		if !strings.Contains(l.file, "passfd") {
			for _, want := range lifecycleSteps {
				if !steps[want] {
					t.Errorf("%s: no %q step", l.file, want)
				}
			}
		}
		for _, preset := range Presets {
			src, _ := Preset(preset)
			for i, s := range l.Steps {
				name := fmt.Sprintf("%s/%s/%02d-%s-%s", preset, strings.TrimSuffix(l.file, ".json"), i, s.Step, s.Request)
				got, defined := evalRule(t, src, s.Request, decode(t, s.Input))
				want := presetWant(preset, s.Request, s.Want)
				if !defined || got != want {
					t.Errorf("%s (%s): got %v (defined %v), want %v", name, s.Source, got, defined, want)
				}
			}
		}
	}
}

// denyExpected are the requests the docs deny outright (exec and stdin);
// a fixture denying anything else must say in a note what the pod sees.
var denyExpected = map[string]bool{
	"ExecProcessRequest": true, "WriteStreamRequest": true, "CloseStdinRequest": true, "TtyWinResizeRequest": true,
}

// The regression of issue 12: the Go runtime sends UpdateEphemeralMounts
// after every create and start with dynamic resources; the fixtures must
// carry it, and it must be allowed.
func TestGoDynamicSendsUpdateEphemeralMounts(t *testing.T) {
	n := 0
	for _, l := range loadLifecycles(t) {
		for _, s := range l.Steps {
			if s.Request == "UpdateEphemeralMountsRequest" {
				n++
				if s.Want != "allow" {
					t.Errorf("%s: UpdateEphemeralMountsRequest must be allowed", l.file)
				}
			}
		}
	}
	if n < 3 {
		t.Fatalf("fixtures carry %d UpdateEphemeralMountsRequest steps, want at least 3 (empty list, create, start)", n)
	}
}

// firstInput returns the first fixture input for request (the realistic
// request the mutations below start from).
func firstInput(t *testing.T, request string) map[string]any {
	t.Helper()
	for _, l := range loadLifecycles(t) {
		for _, s := range l.Steps {
			if s.Request == request && s.Want == "allow" {
				return decode(t, s.Input).(map[string]any)
			}
		}
	}
	t.Fatalf("no allowed %s in the fixtures", request)
	return nil
}

// inputFor is a realistic input for any request: from the fixtures if they
// carry one, else an empty object.
func inputFor(t *testing.T, request string) any {
	t.Helper()
	for _, l := range loadLifecycles(t) {
		for _, s := range l.Steps {
			if s.Request == request {
				return decode(t, s.Input)
			}
		}
	}
	return map[string]any{}
}

// set replaces the value at path (object keys, or array indexes as ints)
// in a copy of in.
func set(t *testing.T, in map[string]any, value any, path ...any) map[string]any {
	t.Helper()
	b, _ := json.Marshal(in)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	var cur any = out
	for i, p := range path {
		last := i == len(path)-1
		switch k := p.(type) {
		case string:
			m := cur.(map[string]any)
			if last {
				m[k] = value
			} else {
				cur = m[k]
			}
		case int:
			a := cur.([]any)
			if last {
				a[k] = value
			} else {
				cur = a[k]
			}
		}
	}
	return out
}

func storageOf(driver, source, fstype, mountPoint string, options ...string) map[string]any {
	opts := []any{}
	for _, o := range options {
		opts = append(opts, o)
	}
	return map[string]any{"driver": driver, "driver_options": []any{}, "source": source, "fstype": fstype,
		"options": opts, "mount_point": mountPoint, "fs_group": nil, "shared": false}
}

// TestConstraints: realistic requests with one field changed to what the
// host must not be able to do (issue 12's side doors), and the shapes the
// runtimes send that must stay allowed.
func TestConstraints(t *testing.T) {
	sb := firstInput(t, "CreateSandboxRequest")
	ct := func() map[string]any {
		for _, l := range loadLifecycles(t) {
			for _, s := range l.Steps {
				if s.Request == "CreateContainerRequest" && s.Want == "allow" {
					in := decode(t, s.Input).(map[string]any)
					if len(in["storages"].([]any)) == 2 {
						return in // the app with watchable-bind and emptyDir
					}
				}
			}
		}
		t.Fatal("no app CreateContainerRequest with two storages in the fixtures")
		return nil
	}()
	eph := firstInput(t, "UpdateEphemeralMountsRequest")
	ephSized := func() map[string]any {
		for _, l := range loadLifecycles(t) {
			for _, s := range l.Steps {
				if s.Request == "UpdateEphemeralMountsRequest" && strings.Contains(string(s.Input), "remount") {
					return decode(t, s.Input).(map[string]any)
				}
			}
		}
		return nil
	}()
	ifc := firstInput(t, "UpdateInterfaceRequest")
	rts := firstInput(t, "UpdateRoutesRequest")
	arp := firstInput(t, "AddARPNeighborsRequest")
	cid := ct["container_id"].(string)
	opa := "/etc/kata-opa"

	cases := []struct {
		name, rule string
		in         map[string]any
		allow      bool
	}{
		// CreateSandbox.
		{"sandbox as sent", "CreateSandboxRequest", sb, true},
		{"sandbox loading a kernel module", "CreateSandboxRequest", set(t, sb, []any{map[string]any{"name": "evil", "parameters": []any{"debug=1"}}}, "kernel_modules"), false},
		{"sandbox with guest hooks", "CreateSandboxRequest", set(t, sb, "/usr/share/oci/hooks", "guest_hook_path"), false},
		{"sandbox with shared pid namespace", "CreateSandboxRequest", set(t, sb, true, "sandbox_pidns"), false},
		{"sandbox without the fields", "CreateSandboxRequest", map[string]any{}, false},
		{"sandbox 9p share", "CreateSandboxRequest", set(t, sb, storageOf("9p", "kataShared", "9p", shared, "trans=virtio", "version=9p2000.L", "cache=mmap", "msize=8192"), "storages", 0), true},
		{"sandbox nydus share", "CreateSandboxRequest", set(t, sb, storageOf("virtio-fs", "kataShared", "virtiofs", "/run/kata-containers/shared/"), "storages", 0), true},
		{"sandbox share mounted over the policy", "CreateSandboxRequest", set(t, sb, opa, "storages", 0, "mount_point"), false},
		{"sandbox share of another tag", "CreateSandboxRequest", set(t, sb, "hostTag", "storages", 0, "source"), false},
		{"sandbox block device mounted anywhere", "CreateSandboxRequest", set(t, sb, storageOf("blk", "02/00", "ext4", "/usr/bin"), "storages", 0), false},
		{"sandbox shm with exec", "CreateSandboxRequest", set(t, sb, []any{"exec", "size=67108864"}, "storages", 1, "options"), false},
		{"sandbox shm elsewhere", "CreateSandboxRequest", set(t, sb, "/run/kata-containers/sandbox/../../../etc/kata-opa", "storages", 1, "mount_point"), false},
		{"sandbox watchable-bind", "CreateSandboxRequest", set(t, sb, ct["storages"].([]any)[0], "storages", 0), false},

		// CreateContainer.
		{"container as sent", "CreateContainerRequest", ct, true},
		{"container with empty hook lists", "CreateContainerRequest", set(t, ct, map[string]any{"Prestart": []any{}, "Poststart": []any{}}, "OCI", "Hooks"), true},
		{"container joining the shared pid namespace", "CreateContainerRequest", set(t, ct, true, "sandbox_pidns"), false},
		{"container with a guest OCI hook", "CreateContainerRequest", set(t, ct, map[string]any{"Prestart": []any{map[string]any{"Path": "/bin/sh", "Args": []any{"sh", "-c", "cat /proc/1/environ"}}}}, "OCI", "Hooks"), false},
		{"container without the fields", "CreateContainerRequest", map[string]any{}, false},
		{"container stdout over vsock (passfd)", "CreateContainerRequest", set(t, ct, 1031, "stdout_port"), false},
		{"container stdin over vsock (passfd)", "CreateContainerRequest", set(t, ct, 1030, "stdin_port"), false},
		{"container stderr over vsock (passfd)", "CreateContainerRequest", set(t, ct, 1032, "stderr_port"), false},
		{"container from an agent without the port fields", "CreateContainerRequest", func() map[string]any {
			m := set(t, ct, 0, "stdin_port")
			delete(m, "stdin_port")
			delete(m, "stdout_port")
			delete(m, "stderr_port")
			return m
		}(), true},
		{"watchable-bind of the policy", "CreateContainerRequest", set(t, ct, "/etc/kata-opa/default-policy.rego", "storages", 0, "source"), false},
		{"watchable-bind of another file name", "CreateContainerRequest", set(t, ct, shared+"watchable/"+cid+"-"+rnd16+"-other", "storages", 0, "mount_point"), false},
		{"watchable-bind onto the agent", "CreateContainerRequest", set(t, ct, "/usr/bin/kata-agent", "storages", 0, "mount_point"), false},
		{"watchable-bind from a container rootfs", "CreateContainerRequest", set(t, ct, storageOf("watchable-bind", shared+sandboxID+"/rootfs", "bind", shared+"watchable/rootfs"), "storages", 0), false},
		{"watchable-bind with traversal", "CreateContainerRequest", set(t, ct, storageOf("watchable-bind", shared+cid+"-"+rnd16+"-x/../../../../etc/shadow", "bind", shared+"watchable/shadow"), "storages", 0), false},
		{"ephemeral over the policy", "CreateContainerRequest", set(t, ct, opa, "storages", 1, "mount_point"), false},
		{"ephemeral with exec and suid", "CreateContainerRequest", set(t, ct, []any{"exec", "suid"}, "storages", 1, "options"), false},
		{"local emptyDir", "CreateContainerRequest", set(t, ct, storageOf("local", "local", "local", shared+sandboxID+"/rootfs/local/data", "mode=0777"), "storages", 1), true},
		{"local emptyDir elsewhere", "CreateContainerRequest", set(t, ct, storageOf("local", "local", "local", "/etc/kata-opa/local/data"), "storages", 1), false},
		{"block rootfs of this container", "CreateContainerRequest", set(t, ct, storageOf("blk", "02/00", "ext4", shared+cid), "storages", 1), true},
		{"block volume", "CreateContainerRequest", set(t, ct, storageOf("scsi", "0:0", "ext4", "/run/kata-containers/sandbox/storage/MDI6MDA="), "storages", 1), true},
		{"block rootfs of another container", "CreateContainerRequest", set(t, ct, storageOf("blk", "02/00", "ext4", shared+sandboxID+"/rootfs"), "storages", 1), false},
		{"block device over the policy", "CreateContainerRequest", set(t, ct, storageOf("blk", "02/00", "ext4", opa), "storages", 1), false},
		{"unknown driver", "CreateContainerRequest", set(t, ct, storageOf("virtio-fs", "kataShared", "virtiofs", shared+cid+"/rootfs"), "storages", 1), false},
		{"guest pull rootfs", "CreateContainerRequest", set(t, ct, storageOf("image_guest_pull", "registry.example/web:1.2", "overlay", "/run/kata-containers/"+cid+"/rootfs"), "storages", 1), true},
		{"nydus overlay rootfs", "CreateContainerRequest", set(t, ct, storageOf("overlayfs", "overlay", "overlay", shared+cid+"/rootfs",
			"upperdir="+shared+cid+"/snapshotdir/fs", "workdir="+shared+cid+"/snapshotdir/work", "lowerdir=/run/kata-containers/shared/rafs/"+cid+"/lowerdir", "index=off"), "storages", 1), true},
		{"overlay with the guest root as lower dir", "CreateContainerRequest", set(t, ct, storageOf("overlayfs", "overlay", "overlay", shared+cid+"/rootfs", "lowerdir=/", "upperdir="+shared+cid+"/fs"), "storages", 1), false},
		{"overlay with traversal", "CreateContainerRequest", set(t, ct, storageOf("overlayfs", "overlay", "overlay", shared+cid+"/rootfs", "lowerdir=/run/kata-containers/../../etc"), "storages", 1), false},

		// UpdateEphemeralMounts.
		{"ephemeral mounts: empty list", "UpdateEphemeralMountsRequest", eph, true},
		{"ephemeral mounts: tmpfs resize", "UpdateEphemeralMountsRequest", ephSized, true},
		{"ephemeral mounts: without remount", "UpdateEphemeralMountsRequest", set(t, ephSized, []any{"size=2048M"}, "storages", 0, "options"), false},
		{"ephemeral mounts: the shm", "UpdateEphemeralMountsRequest", set(t, ephSized, "/run/kata-containers/sandbox/shm", "storages", 0, "mount_point"), false},
		{"ephemeral mounts: over the policy", "UpdateEphemeralMountsRequest", set(t, ephSized, opa, "storages", 0, "mount_point"), false},
		{"ephemeral mounts: another driver", "UpdateEphemeralMountsRequest", set(t, ephSized, "blk", "storages", 0, "driver"), false},
		{"ephemeral mounts: exec", "UpdateEphemeralMountsRequest", set(t, ephSized, []any{"remount", "exec"}, "storages", 0, "options"), false},
		{"ephemeral mounts: no storages field", "UpdateEphemeralMountsRequest", map[string]any{}, false},

		// Networking, genpolicy's rules.
		{"interface as sent", "UpdateInterfaceRequest", ifc, true},
		{"interface with IFF_NOARP", "UpdateInterfaceRequest", set(t, ifc, 128, "interface", "raw_flags"), true},
		{"interface lo", "UpdateInterfaceRequest", set(t, ifc, "lo", "interface", "name"), false},
		{"interface device lo", "UpdateInterfaceRequest", set(t, ifc, "lo", "interface", "device"), false},
		{"interface IFF_PROMISC", "UpdateInterfaceRequest", set(t, ifc, 256, "interface", "raw_flags"), false},
		{"interface zero MAC", "UpdateInterfaceRequest", set(t, ifc, "00:00:00:00:00:00", "interface", "hwAddr"), false},
		{"interface loopback address", "UpdateInterfaceRequest", set(t, ifc, map[string]any{"family": 0, "address": "127.0.0.53", "mask": "8"}, "interface", "IPAddresses", 0), false},
		{"interface ::1", "UpdateInterfaceRequest", set(t, ifc, map[string]any{"family": 1, "address": "::1", "mask": "128"}, "interface", "IPAddresses", 1), false},
		{"interface without fields", "UpdateInterfaceRequest", map[string]any{}, false},
		{"routes as sent", "UpdateRoutesRequest", rts, true},
		{"route via lo", "UpdateRoutesRequest", set(t, rts, "lo", "routes", "Routes", 0, "device"), false},
		{"route with a loopback source", "UpdateRoutesRequest", set(t, rts, "127.0.0.1", "routes", "Routes", 1, "source"), false},
		{"route with ::1 source", "UpdateRoutesRequest", set(t, rts, "::1", "routes", "Routes", 2, "source"), false},
		{"route via a loopback gateway", "UpdateRoutesRequest", set(t, rts, "127.0.0.1", "routes", "Routes", 0, "gateway"), false},
		{"routes without fields", "UpdateRoutesRequest", map[string]any{}, false},
		{"neighbours as sent", "AddARPNeighborsRequest", arp, true},
		{"neighbour reachable, NTF_PROXY|NTF_ROUTER", "AddARPNeighborsRequest", set(t, set(t, arp, 2, "neighbors", "ARPNeighbors", 0, "state"), 136, "neighbors", "ARPNeighbors", 0, "flags"), true},
		{"neighbour on lo", "AddARPNeighborsRequest", set(t, arp, "lo", "neighbors", "ARPNeighbors", 0, "device"), false},
		{"neighbour with a mask", "AddARPNeighborsRequest", set(t, arp, "32", "neighbors", "ARPNeighbors", 0, "toIPAddress", "mask"), false},
		{"neighbour loopback", "AddARPNeighborsRequest", set(t, arp, "127.0.0.1", "neighbors", "ARPNeighbors", 0, "toIPAddress", "address"), false},
		{"neighbour NUD_STALE", "AddARPNeighborsRequest", set(t, arp, 4, "neighbors", "ARPNeighbors", 0, "state"), false},
		{"neighbour odd flags", "AddARPNeighborsRequest", set(t, arp, 1, "neighbors", "ARPNeighbors", 0, "flags"), false},
		{"neighbours without fields", "AddARPNeighborsRequest", map[string]any{}, false},
	}
	for _, preset := range Presets {
		src, _ := Preset(preset)
		for _, c := range cases {
			got, defined := evalRule(t, src, c.rule, c.in)
			if !defined {
				t.Fatalf("%s: %s undefined", preset, c.rule)
			}
			if got != c.allow {
				t.Errorf("%s: %s: %s = %v, want %v", preset, c.name, c.rule, got, c.allow)
			}
		}
	}
}

// presetSpecs describe the presets as edits of default-restrictive.rego, so
// the three files cannot drift apart: UPDATE_GOLDEN=1 go test ./policy
// -run Rendered rewrites them from the restrictive file.
var presetSpecs = map[string]struct {
	title string
	about []string
}{
	PresetDenyLogs: {`"deny-logs"`, []string{
		"Same as default-restrictive.rego, except that the host may not read the",
		"containers' stdout/stderr: kubectl logs is empty. COST: the shims stop",
		"reading at the first (redacted, empty) reply, so a container that writes",
		"more than about 64 KiB (one pipe) to stdout/stderr blocks on write. Only",
		"for containers that log little or send their logs elsewhere.",
		"node-agent kata initdata --preset deny-logs",
	}},
	PresetAllowExec: {`"allow-exec" (DEBUG ONLY)`, []string{
		"Same as default-restrictive.rego, except that the host may exec into",
		"containers and use their stdio (kubectl exec/attach/logs). This gives the",
		"node's administrator the pod's data: use it to debug, never in production.",
		"node-agent kata initdata --preset allow-exec",
	}},
}

func renderPreset(t *testing.T, name string) []byte {
	t.Helper()
	spec, ok := presetSpecs[name]
	if !ok {
		t.Fatalf("no spec for preset %s", name)
	}
	lines := strings.Split(string(Restrictive()), "\n")
	lines[0] = "# authbridge-node: Kata agent policy preset " + spec.title + "."
	var out []string
	opened := map[string]int{}
	for _, l := range lines {
		if l == "package agent_policy" {
			out = append(out, "#")
			for _, a := range spec.about {
				out = append(out, "# "+a)
			}
		}
		for _, r := range presetOpens[name] {
			if l == "default "+r+" := false" {
				l = "default " + r + " := true # opened by this preset"
				opened[r]++
			}
		}
		for _, r := range presetCloses[name] {
			if l == "default "+r+" := true" {
				l = "default " + r + " := false # closed by this preset"
				opened[r]++
			}
		}
		out = append(out, l)
	}
	for _, r := range append(append([]string(nil), presetOpens[name]...), presetCloses[name]...) {
		if opened[r] != 1 {
			t.Fatalf("preset %s: `default %s := ...` found %d times in default-restrictive.rego, want 1", name, r, opened[r])
		}
	}
	return []byte(strings.Join(out, "\n"))
}

func TestPresetFilesRendered(t *testing.T) {
	var names []string
	for n := range presetSpecs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		want := renderPreset(t, name)
		file := name + ".rego"
		if os.Getenv("UPDATE_GOLDEN") != "" {
			if err := os.WriteFile(file, want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, _ := Preset(name)
		if string(got) != string(want) {
			disk, _ := os.ReadFile(file)
			if string(disk) != string(want) {
				t.Errorf("%s is not default-restrictive.rego with %v opened and %v closed: regenerate with UPDATE_GOLDEN=1 go test ./policy -run Rendered", file, presetOpens[name], presetCloses[name])
			} else {
				t.Errorf("%s regenerated; re-run the tests (the embedded copy is the old one)", file)
			}
		}
	}
}
