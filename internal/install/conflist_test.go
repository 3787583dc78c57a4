package install

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"syscall"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// testEntry is our entry as the agent would build it (kubeconfig, state
// dir, policy); the exact policy fields are pkg/config's business.
var testEntry = map[string]any{
	"type":       pluginconf.PluginType,
	"kubeconfig": "/etc/cni/net.d/authbridge-cni.kubeconfig",
	"stateDir":   "/run/authbridge-node",
	"policy": map[string]any{
		"defaultMode":  "enforce-redirect",
		"proxyUID":     1337,
		"outboundPort": 8082,
		"mark":         4294967295,
	},
}

const testKubeconfigName = "authbridge-cni.kubeconfig"

// quietLog keeps test output to warnings and errors.
var quietLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

func testOptions(dir string) Options {
	return Options{ConfDir: dir, Entry: testEntry, IgnoreNames: []string{testKubeconfigName}, Logger: quietLog}
}

func entryJSON(t testing.TB, e any) []byte {
	t.Helper()
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// copyFixture copies testdata/name into dir with the given mode.
func copyFixture(t testing.TB, dir, name string, mode os.FileMode) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// generic decodes JSON keeping numbers as their literal text.
func generic(t testing.TB, data []byte) map[string]any {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
	return m
}

func keyOrder(t testing.TB, data []byte) []string {
	t.Helper()
	obj, err := parseObject(data)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, m := range obj {
		keys = append(keys, m.Key)
	}
	return keys
}

// pluginsOf returns the plugin list of a conflist, or the single plugin of
// a .conf, decoded generically.
func pluginsOf(t testing.TB, doc map[string]any) []any {
	t.Helper()
	if p, ok := doc["plugins"]; ok {
		return p.([]any)
	}
	return []any{doc}
}

func ourEntries(plugins []any) int {
	n := 0
	for _, p := range plugins {
		if p.(map[string]any)["type"] == pluginconf.PluginType {
			n++
		}
	}
	return n
}

func inode(t testing.TB, path string) uint64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func TestInstallRealPrimaryCNIConfigs(t *testing.T) {
	for _, tc := range []struct {
		fixture string
		mode    os.FileMode
		// wantFile is the file holding our entry after install.
		wantFile string
		// literals must appear verbatim in the installed file.
		literals []string
	}{
		{fixture: "10-kindnet.conflist", mode: 0o644, wantFile: "10-kindnet.conflist", literals: []string{`"mtu": 1500`, `"subnet": "10.244.0.0/24"`}},
		{fixture: "10-calico.conflist", mode: 0o600, wantFile: "10-calico.conflist", literals: []string{`"log_file_max_size": 100`, `"mtu": 0`}},
		{fixture: "05-cilium.conflist", mode: 0o644, wantFile: "05-cilium.conflist"},
		{fixture: "10-ovn-kubernetes.conf", mode: 0o640, wantFile: "10-ovn-kubernetes.conflist", literals: []string{`"logfile-maxsize": 100`}},
		{fixture: "10-flannel.conflist", mode: 0o644, wantFile: "10-flannel.conflist"},
		{fixture: "99-edge-cases.conflist", mode: 0o644, wantFile: "99-edge-cases.conflist", literals: []string{
			`"uint64Max": 18446744073709551615`, `"beyondFloat53": 9007199254740993`,
			`"negative": -9223372036854775808`, `"exponent": 1.0E+2`, `"trailingZeros": 2.500`,
			`2.50`, `-0`, `1e3`, `"mark": 4294967295`,
		}},
	} {
		t.Run(tc.fixture, func(t *testing.T) {
			dir := t.TempDir()
			orig := copyFixture(t, dir, tc.fixture, tc.mode)
			origData, _ := os.ReadFile(orig)
			origDoc := generic(t, origData)
			origPlugins := pluginsOf(t, origDoc)
			single := filepath.Ext(orig) == ".conf"
			// Our kubeconfig lives in the conf dir too; it must stay alone.
			kc := filepath.Join(dir, testKubeconfigName)
			if err := os.WriteFile(kc, []byte("apiVersion: v1\n"), 0o600); err != nil {
				t.Fatal(err)
			}

			o := testOptions(dir)
			res, err := InstallEntry(o)
			if err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(dir, tc.wantFile)
			if res.File != want || !res.Changed {
				t.Fatalf("result %+v, want file %s changed", res, want)
			}
			got, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			doc := generic(t, got)
			plugins := pluginsOf(t, doc)
			if len(plugins) != len(origPlugins)+1 {
				t.Fatalf("%d plugins, want %d", len(plugins), len(origPlugins)+1)
			}
			// Every original plugin, unchanged and in order.
			if !reflect.DeepEqual(plugins[:len(origPlugins)], origPlugins) {
				t.Errorf("original plugins changed:\n got %v\nwant %v", plugins[:len(origPlugins)], origPlugins)
			}
			// Ours last, equal to what we passed.
			if !reflect.DeepEqual(plugins[len(plugins)-1], generic(t, entryJSON(t, testEntry))) {
				t.Errorf("last plugin %v is not our entry", plugins[len(plugins)-1])
			}
			// Every other top-level field kept, in order.
			for k, v := range origDoc {
				if k == "plugins" || single && k != "cniVersion" && k != "name" {
					continue
				}
				if !reflect.DeepEqual(doc[k], v) {
					t.Errorf("top-level %q: got %v, want %v", k, doc[k], v)
				}
			}
			if !single && !reflect.DeepEqual(keyOrder(t, got), keyOrder(t, origData)) {
				t.Errorf("top-level key order %v, want %v", keyOrder(t, got), keyOrder(t, origData))
			}
			if !single {
				before, after := rawPlugins(t, origData), rawPlugins(t, got)
				for i := range before {
					if !reflect.DeepEqual(keyOrder(t, after[i]), keyOrder(t, before[i])) {
						t.Errorf("plugins[%d] key order %v, want %v", i, keyOrder(t, after[i]), keyOrder(t, before[i]))
					}
				}
			}
			if single {
				if _, err := os.Stat(orig); !os.IsNotExist(err) {
					t.Errorf("%s still exists after conversion (err %v)", orig, err)
				}
				backup, err := os.ReadFile(orig + BackupSuffix)
				if err != nil || !bytes.Equal(backup, origData) {
					t.Errorf("backup %s: err %v, equal %v", orig+BackupSuffix, err, bytes.Equal(backup, origData))
				}
				if res.Converted != orig {
					t.Errorf("Converted = %q, want %q", res.Converted, orig)
				}
				if ck := keyOrder(t, got); !reflect.DeepEqual(ck, []string{"cniVersion", "name", "plugins"}) {
					t.Errorf("converted keys %v", ck)
				}
				if !sameKeyOrderOfFirstPlugin(t, got, origData) {
					t.Errorf("converted plugin key order changed")
				}
			}
			for _, lit := range tc.literals {
				if !bytes.Contains(got, []byte(lit)) {
					t.Errorf("literal %s lost:\n%s", lit, got)
				}
			}
			if fi, _ := os.Stat(want); fi.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, want %v", fi.Mode().Perm(), tc.mode)
			}
			// The runtime's own loader accepts it and sees the file's version.
			list, err := libcni.ConfListFromBytes(got)
			if err != nil {
				t.Fatalf("libcni rejects the result: %v", err)
			}
			if list.CNIVersion != origDoc["cniVersion"] || list.Plugins[len(list.Plugins)-1].Network.Type != pluginconf.PluginType {
				t.Errorf("libcni sees version %q, last type %q", list.CNIVersion, list.Plugins[len(list.Plugins)-1].Network.Type)
			}

			// Twice: nothing written, still one entry.
			ino := inode(t, want)
			res2, err := InstallEntry(o)
			if err != nil || res2.Changed || res2.File != want {
				t.Fatalf("second install: %+v, %v", res2, err)
			}
			again, _ := os.ReadFile(want)
			if !bytes.Equal(again, got) || inode(t, want) != ino {
				t.Errorf("second install rewrote the file")
			}
			if n := ourEntries(pluginsOf(t, generic(t, again))); n != 1 {
				t.Errorf("%d entries after second install", n)
			}

			// A changed entry (new agent config) replaces the old one.
			o2 := o
			o2.Entry = json.RawMessage(`{"type":"authbridge-cni","kubeconfig":"/other","policy":{"mark":1}}`)
			if res3, err := InstallEntry(o2); err != nil || !res3.Changed {
				t.Fatalf("install of changed entry: %+v %v", res3, err)
			}
			updated, _ := os.ReadFile(want)
			up := pluginsOf(t, generic(t, updated))
			if ourEntries(up) != 1 || up[len(up)-1].(map[string]any)["kubeconfig"] != "/other" {
				t.Errorf("entry not replaced: %s", updated)
			}

			// Uninstall: the original is back.
			changed, err := RemoveEntry(o)
			if err != nil {
				t.Fatal(err)
			}
			if single {
				restored, err := os.ReadFile(orig)
				if err != nil || !bytes.Equal(restored, origData) {
					t.Fatalf("%s not restored byte for byte: %v\n%s", orig, err, restored)
				}
				for _, gone := range []string{want, orig + BackupSuffix} {
					if _, err := os.Stat(gone); !os.IsNotExist(err) {
						t.Errorf("%s left behind", gone)
					}
				}
				if fi, _ := os.Stat(orig); fi.Mode().Perm() != tc.mode {
					t.Errorf("restored mode %v, want %v", fi.Mode().Perm(), tc.mode)
				}
			} else {
				after, _ := os.ReadFile(want)
				if !reflect.DeepEqual(generic(t, after), origDoc) {
					t.Errorf("after uninstall:\n%s\nwant (semantically)\n%s", after, origData)
				}
				if !reflect.DeepEqual(keyOrder(t, after), keyOrder(t, origData)) {
					t.Errorf("key order after uninstall %v", keyOrder(t, after))
				}
			}
			if len(changed) == 0 {
				t.Errorf("RemoveEntry reports no change")
			}
			if kcData, _ := os.ReadFile(kc); string(kcData) != "apiVersion: v1\n" {
				t.Errorf("kubeconfig touched")
			}
			assertNoTempFiles(t, dir)
		})
	}
}

func rawPlugins(t testing.TB, conflist []byte) []json.RawMessage {
	t.Helper()
	obj, err := parseObject(conflist)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := obj.get("plugins")
	elems, err := decodeArray(raw)
	if err != nil {
		t.Fatal(err)
	}
	return elems
}

// sameKeyOrderOfFirstPlugin: the converted conflist's first plugin keeps
// the .conf's key order.
func sameKeyOrderOfFirstPlugin(t testing.TB, conflist, conf []byte) bool {
	return reflect.DeepEqual(keyOrder(t, rawPlugins(t, conflist)[0]), keyOrder(t, conf))
}

func assertNoTempFiles(t testing.TB, dir string) {
	t.Helper()
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temp file %s left in %s", e.Name(), dir)
		}
	}
}

func TestCNIVersionsKept(t *testing.T) {
	for _, v := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "10-bridge.conflist")
			src := `{"cniVersion":"` + v + `","name":"net","plugins":[{"type":"bridge","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}]}`
			if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := InstallEntry(testOptions(dir)); err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(p)
			list, err := libcni.ConfListFromBytes(data)
			if err != nil {
				t.Fatal(err)
			}
			last := list.Plugins[len(list.Plugins)-1]
			if list.CNIVersion != v || last.Network.Type != pluginconf.PluginType {
				t.Fatalf("version %q type %q", list.CNIVersion, last.Network.Type)
			}
		})
	}
}

func TestUnparseableFileIsReportedAndUntouched(t *testing.T) {
	for name, content := range map[string]string{
		"00-broken.conflist":     `{"cniVersion": "0.4.0", "name": "x", "plugins": [{"type": "bridge"`,
		"00-empty.conf":          ``,
		"00-trailing.json":       `{"cniVersion": "0.4.0", "name": "x", "type": "bridge"} {}`,
		"00-badplugins.conflist": `{"cniVersion": "0.4.0", "name": "x", "plugins": {"type": "bridge"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			kind := copyFixture(t, dir, "10-kindnet.conflist", 0o644)
			kindData, _ := os.ReadFile(kind)
			bad := filepath.Join(dir, name)
			if err := os.WriteFile(bad, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			fi0, _ := os.Stat(bad)
			_, err := InstallEntry(testOptions(dir))
			if err == nil || !strings.Contains(err.Error(), bad) {
				t.Fatalf("error %v does not name %s", err, bad)
			}
			t.Logf("error: %v", err)
			if data, _ := os.ReadFile(bad); string(data) != content {
				t.Errorf("broken file changed")
			}
			if fi, _ := os.Stat(bad); !fi.ModTime().Equal(fi0.ModTime()) || inode(t, bad) != fi0.Sys().(*syscall.Stat_t).Ino {
				t.Errorf("broken file rewritten")
			}
			if data, _ := os.ReadFile(kind); !bytes.Equal(data, kindData) {
				t.Errorf("next file edited although the first one does not parse")
			}
		})
	}
}

func TestPrimaryIsLexicallyFirstLikeLibcni(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	copyFixture(t, dir, "10-kindnet.conflist", 0o644)
	copyFixture(t, dir, "10-calico.conflist", 0o644)
	copyFixture(t, dir, "10-flannel.conflist", 0o644)
	write("9-late-because-bytes.conflist", `{"cniVersion":"0.4.0","name":"late","plugins":[{"type":"bridge"}]}`)
	write("00-not-cni.json", `{"some": "tool state"}`)
	write("01-ours.conflist", `{"cniVersion":"0.4.0","name":"ours","plugins":[{"type":"bridge"}]}`)
	write(testKubeconfigName, "apiVersion: v1\n")
	write("02-readme.txt", "not a config")
	write(".authbridge-123.tmp", "{")
	if err := os.Mkdir(filepath.Join(dir, "03-dir.conflist"), 0o755); err != nil {
		t.Fatal(err)
	}
	o := testOptions(dir)
	o.IgnoreNames = append(o.IgnoreNames, "01-ours.conflist")

	got, err := PrimaryConfFile(dir, o.IgnoreNames)
	if err != nil {
		t.Fatal(err)
	}
	// What containerd/CRI-O compute: libcni.ConfFiles + sort.Strings,
	// minus ours and the JSON file that is not a network config.
	files, err := libcni.ConfFiles(dir, []string{".conf", ".conflist", ".json"})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	var runtimeOrder []string
	for _, f := range files {
		if b := filepath.Base(f); b != "01-ours.conflist" && b != "00-not-cni.json" {
			runtimeOrder = append(runtimeOrder, b)
		}
	}
	t.Logf("runtime order: %v", runtimeOrder)
	want := filepath.Join(dir, "10-calico.conflist")
	if got != want || runtimeOrder[0] != "10-calico.conflist" {
		t.Fatalf("primary %s (runtime order %v), want %s", got, runtimeOrder, want)
	}
	res, err := InstallEntry(o)
	if err != nil || res.File != want {
		t.Fatalf("install into %+v, %v", res, err)
	}
	for _, other := range []string{"10-kindnet.conflist", "10-flannel.conflist", "9-late-because-bytes.conflist", "01-ours.conflist"} {
		data, _ := os.ReadFile(filepath.Join(dir, other))
		if bytes.Contains(data, []byte(pluginconf.PluginType)) {
			t.Errorf("%s got our entry", other)
		}
	}

	// A .conf sorts before the .conflist of the same name.
	dir2 := t.TempDir()
	copyFixture(t, dir2, "10-ovn-kubernetes.conf", 0o644)
	if err := os.WriteFile(filepath.Join(dir2, "10-ovn-kubernetes.conflist"), []byte(`{"cniVersion":"0.4.0","name":"foreign","plugins":[{"type":"bridge"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, _ := PrimaryConfFile(dir2, nil); filepath.Base(p) != "10-ovn-kubernetes.conf" {
		t.Errorf("primary %s", p)
	}
	// Converting would overwrite a file we did not write: refused.
	if _, err := InstallEntry(testOptions(dir2)); err == nil || !strings.Contains(err.Error(), "not written by us") {
		t.Errorf("conversion over a foreign conflist: %v", err)
	}

	// No config at all.
	if _, err := InstallEntry(testOptions(t.TempDir())); err == nil || !strings.Contains(err.Error(), ErrNoPrimaryConfig.Error()) {
		t.Errorf("empty dir: %v", err)
	}
}

func TestEntryValidation(t *testing.T) {
	dir := t.TempDir()
	copyFixture(t, dir, "10-kindnet.conflist", 0o644)
	for _, e := range []any{nil, `"string"`, json.RawMessage(`[1]`), json.RawMessage(`{"type":"other"}`), json.RawMessage(`{`)} {
		o := testOptions(dir)
		o.Entry = e
		if _, err := InstallEntry(o); err == nil || !strings.Contains(err.Error(), "option Entry") {
			t.Errorf("entry %v: error %v", e, err)
		}
	}
	// type may be omitted: it is set.
	o := testOptions(dir)
	o.Entry = json.RawMessage(`{"kubeconfig":"/k"}`)
	if _, err := InstallEntry(o); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(dir, "10-kindnet.conflist"))
	p := pluginsOf(t, generic(t, data))
	if ourEntries(p) != 1 {
		t.Errorf("entry without type not installed as ours: %s", data)
	}
}

func TestEntryMovedLastWhenNotLast(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "10-x.conflist")
	src := `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"ptp"},` + string(entryJSON(t, testEntry)) + `,{"type":"portmap","capabilities":{"portMappings":true}}]}`
	if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := InstallEntry(testOptions(dir))
	if err != nil || !res.Changed {
		t.Fatalf("%+v %v", res, err)
	}
	data, _ := os.ReadFile(p)
	pl := pluginsOf(t, generic(t, data))
	if len(pl) != 3 || pl[2].(map[string]any)["type"] != pluginconf.PluginType || pl[1].(map[string]any)["type"] != "portmap" {
		t.Errorf("order: %s", data)
	}
}

func TestRemoveEntryKeepsForeignEditsOfConvertedFile(t *testing.T) {
	dir := t.TempDir()
	orig := copyFixture(t, dir, "10-ovn-kubernetes.conf", 0o644)
	res, err := InstallEntry(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	// An admin adds a plugin to the converted conflist.
	data, _ := os.ReadFile(res.File)
	edited := strings.Replace(string(data), `"plugins": [`, `"plugins": [{"type":"bandwidth","capabilities":{"bandwidth":true}},`, 1)
	if err := os.WriteFile(res.File, []byte(edited), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := RemoveEntry(testOptions(dir)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(orig); !os.IsNotExist(err) {
		t.Errorf("original restored over a changed conflist")
	}
	after, _ := os.ReadFile(res.File)
	pl := pluginsOf(t, generic(t, after))
	if len(pl) != 2 || ourEntries(pl) != 0 {
		t.Errorf("after remove: %s", after)
	}
	if _, err := os.Stat(orig + BackupSuffix); !os.IsNotExist(err) {
		t.Errorf("stale backup kept")
	}
}

func TestRemoveEntryFromEveryFile(t *testing.T) {
	dir := t.TempDir()
	copyFixture(t, dir, "10-kindnet.conflist", 0o644)
	if _, err := InstallEntry(testOptions(dir)); err != nil {
		t.Fatal(err)
	}
	// A new primary appears and gets the entry too.
	copyFixture(t, dir, "05-cilium.conflist", 0o644)
	if _, err := InstallEntry(testOptions(dir)); err != nil {
		t.Fatal(err)
	}
	changed, err := RemoveEntry(testOptions(dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(changed) != 2 {
		t.Errorf("changed %v, want both files", changed)
	}
	for _, f := range []string{"10-kindnet.conflist", "05-cilium.conflist"} {
		data, _ := os.ReadFile(filepath.Join(dir, f))
		orig, _ := os.ReadFile(filepath.Join("testdata", f))
		if !reflect.DeepEqual(generic(t, data), generic(t, orig)) {
			t.Errorf("%s not back to original", f)
		}
	}
}

func TestSymlinkedConfigStaysALink(t *testing.T) {
	dir := t.TempDir()
	real := t.TempDir()
	target := copyFixture(t, real, "10-flannel.conflist", 0o644)
	link := filepath.Join(dir, "10-flannel.conflist")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if _, err := InstallEntry(testOptions(dir)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("link replaced by a file: %v %v", fi, err)
	}
	data, _ := os.ReadFile(target)
	if ourEntries(pluginsOf(t, generic(t, data))) != 1 {
		t.Errorf("link target not updated")
	}
}
