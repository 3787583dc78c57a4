package runtimehandler

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDefault(t *testing.T) {
	write := func(t *testing.T, root, rel, body string) {
		t.Helper()
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"nothing", nil, ""},
		{"containerd 1.x runc", map[string]string{ContainerdConfig: "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"runc\"\n"}, "runc"},
		{"containerd 2.x gvisor default", map[string]string{ContainerdConfig: "version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd]\n  default_runtime_name = 'runsc'\n"}, "runsc"},
		{"containerd commented key", map[string]string{ContainerdConfig: "version = 2\n#  default_runtime_name = \"kata\"\n"}, ContainerdBuiltinDefault},
		{"crio main", map[string]string{CRIOConfig: "[crio.runtime]\ndefault_runtime = \"crun\"\n"}, "crun"},
		{"crio drop-in wins", map[string]string{CRIOConfig: "[crio.runtime]\ndefault_runtime = \"crun\"\n", CRIODropInDir + "/10-kata.conf": "[crio.runtime]\ndefault_runtime = \"kata\"\n"}, "kata"},
		{"crio without key", map[string]string{CRIOConfig: "[crio.runtime]\n"}, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, body := range c.files {
				write(t, root, rel, body)
			}
			got, src, err := Default(root)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want {
				t.Errorf("Default = %q (from %q), want %q", got, src, c.want)
			}
		})
	}
}
