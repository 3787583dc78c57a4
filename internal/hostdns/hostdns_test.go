package hostdns

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestReadResolvConf(t *testing.T) {
	p := filepath.Join(t.TempDir(), "resolv.conf")
	content := "# comment\nsearch example.com\nnameserver 10.0.0.2\nnameserver fe80::1%eth0\nnameserver  2001:db8::53 \nnameserver not-an-ip\noptions ndots:5\n"
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResolvConf(p)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.2", "2001:db8::53"}; !reflect.DeepEqual(got, want) {
		t.Errorf("nameservers %q, want %q (zoned and invalid ones dropped)", got, want)
	}
	if _, err := ReadResolvConf(p + ".missing"); err == nil {
		t.Error("missing resolv.conf read without error")
	}
}

func TestFindKubeletConfigSkipsKubeconfig(t *testing.T) {
	root := t.TempDir()
	for p, c := range map[string]string{
		"etc/kubernetes/kubelet.conf":                "apiVersion: v1\nkind: Config\n",
		"etc/kubernetes/kubelet/kubelet-config.json": `{"kind":"KubeletConfiguration","clusterDNS":["10.100.0.10"],"resolvConf":"/etc/resolv.conf"}`,
	} {
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	kc := FindKubeletConfig(root)
	if kc.Err != nil || !strings.HasSuffix(kc.Path, "kubelet-config.json") || !reflect.DeepEqual(kc.ClusterDNS, []string{"10.100.0.10"}) || kc.ResolvConf != "/etc/resolv.conf" {
		t.Fatalf("FindKubeletConfig = %+v", kc)
	}
}
