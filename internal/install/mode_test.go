package install

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/pkg/config"
)

// TestResolveMode: auto follows the default network (the lexically first
// config): Multus' thin (multus) and thick (multus-shim, OpenShift's
// 00-multus.conf) configs and a conflist an earlier agent made of one give
// multus-attachment; any other primary CNI gives chain; an empty conf dir
// is ErrNoPrimaryConfig (the agent waits). chain and multus-attachment are
// taken as set.
func TestResolveMode(t *testing.T) {
	thin := `{"cniVersion":"1.0.0","name":"multus-cni-network","type":"multus","kubeconfig":"/etc/cni/net.d/multus.d/multus.kubeconfig","clusterNetwork":"/etc/cni/net.d/10-kindnet.conflist"}`
	for _, tc := range []struct {
		name  string
		files map[string]string // name -> content; "@x" copies testdata/x
		mode  config.InstallMode
		want  config.InstallMode
		err   error
	}{
		{"OpenShift 00-multus.conf (multus-shim)", map[string]string{"00-multus.conf": "@00-multus.conf"}, config.InstallAuto, config.InstallMultusAttachment, nil},
		{"thin Multus first, kindnet after", map[string]string{"00-multus.conf": thin, "10-kindnet.conflist": "@10-kindnet.conflist"}, config.InstallAuto, config.InstallMultusAttachment, nil},
		{"Multus converted by an earlier agent", map[string]string{"00-multus.conflist": `{"cniVersion":"0.3.1","name":"multus-cni-network","plugins":[{"type":"multus-shim"},{"type":"authbridge-cni"}]}`}, config.InstallAuto, config.InstallMultusAttachment, nil},
		{"kindnet", map[string]string{"10-kindnet.conflist": "@10-kindnet.conflist"}, config.InstallAuto, config.InstallChain, nil},
		{"OVN-Kubernetes without Multus", map[string]string{"10-ovn-kubernetes.conf": "@10-ovn-kubernetes.conf"}, config.InstallAuto, config.InstallChain, nil},
		{"Multus sorted after the primary", map[string]string{"10-kindnet.conflist": "@10-kindnet.conflist", "99-multus.conf": thin}, config.InstallAuto, config.InstallChain, nil},
		{"empty conf dir", nil, config.InstallAuto, "", ErrNoPrimaryConfig},
		{"chain set on a Multus node", map[string]string{"00-multus.conf": "@00-multus.conf"}, config.InstallChain, config.InstallChain, nil},
		{"multus-attachment set on an empty dir", nil, config.InstallMultusAttachment, config.InstallMultusAttachment, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, content := range tc.files {
				if strings.HasPrefix(content, "@") {
					copyFixture(t, dir, strings.TrimPrefix(content, "@"), 0o644)
					if filepath.Base(name) != strings.TrimPrefix(content, "@") {
						t.Fatalf("test bug: fixture %s under another name %s", content, name)
					}
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, why, err := ResolveMode(testOptions(dir), tc.mode)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("ResolveMode = %q, %v; want %v", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want || why == "" {
				t.Fatalf("ResolveMode = %q (%q), %v; want %q with a reason", got, why, err, tc.want)
			}
		})
	}
}

// TestWriteEntryFile: the entry file is the conflist entry (type set),
// 0600, in a directory created 0700; an unchanged entry is not rewritten.
func TestWriteEntryFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cred")
	path := filepath.Join(dir, "authbridge-cni-entry.json")
	o := testOptions(t.TempDir())
	changed, err := WriteEntryFile(path, o)
	if err != nil || !changed {
		t.Fatalf("first write: %v %v", changed, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("entry file: %v %v", fi, err)
	}
	if di, err := os.Stat(dir); err != nil || di.Mode().Perm() != 0o700 {
		t.Fatalf("entry dir: %v %v", di, err)
	}
	b, _ := os.ReadFile(path)
	if !semanticEqual(b, entryJSON(t, testEntry)) {
		t.Fatalf("entry file %s, want %s", b, entryJSON(t, testEntry))
	}
	if changed, err := WriteEntryFile(path, o); err != nil || changed {
		t.Fatalf("second write: changed %v, %v; want no write", changed, err)
	}
	if err := RemoveEntryFile(path); err != nil {
		t.Fatal(err)
	}
	if err := RemoveEntryFile(path); err != nil {
		t.Fatalf("removing a missing entry file: %v", err)
	}
}
