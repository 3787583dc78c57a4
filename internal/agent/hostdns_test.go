package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kagenti/authbridge-node/internal/hostdns"
	"github.com/kagenti/authbridge-node/internal/runtimehandler"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
)

func writeHostFile(t *testing.T, root, path, content string) {
	t.Helper()
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const kubeadmKubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: k, cluster: {server: "https://10.0.0.1:6443"}}]
`

// Host roots laid out like real distributions: the agent finds the kubelet
// config without flags, takes clusterDNS from it, and reads the resolvers
// from the kubelet's resolvConf (systemd-resolved's upstream file), not
// from /etc/resolv.conf (the 127.0.0.53 stub pods cannot reach).
func TestHostDNSFromHostRoot(t *testing.T) {
	const stub = "nameserver 127.0.0.53\noptions edns0\n"
	for _, tc := range []struct {
		name          string
		files         map[string]string
		wantPath      string
		wantDNS       string
		wantResolvers string
	}{
		{
			name: "kubeadm",
			files: map[string]string{
				"var/lib/kubelet/config.yaml":     "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nresolvConf: /run/systemd/resolve/resolv.conf\n",
				"etc/kubernetes/kubelet.conf":     kubeadmKubeconfig,
				"run/systemd/resolve/resolv.conf": "nameserver 192.0.2.1\nnameserver 2001:db8::1\n",
				"etc/resolv.conf":                 stub,
			},
			wantPath: "var/lib/kubelet/config.yaml", wantDNS: "10.96.0.10", wantResolvers: "192.0.2.1,2001:db8::1",
		},
		{
			// RHCOS: the KubeletConfiguration is JSON at /etc/kubernetes/kubelet.conf.
			name: "openshift",
			files: map[string]string{
				"etc/kubernetes/kubelet.conf": `{"kind":"KubeletConfiguration","apiVersion":"kubelet.config.k8s.io/v1beta1","clusterDNS":["172.30.0.10"],"resolvConf":"/etc/resolv.conf"}`,
				"etc/resolv.conf":             "search example.com\nnameserver 198.51.100.7\n",
			},
			wantPath: "etc/kubernetes/kubelet.conf", wantDNS: "172.30.0.10", wantResolvers: "198.51.100.7",
		},
		{
			// kubeadm's kubelet.conf is a kubeconfig, not a
			// KubeletConfiguration: skipped; EKS's JSON found next.
			name: "eks",
			files: map[string]string{
				"etc/kubernetes/kubelet.conf":                kubeadmKubeconfig,
				"etc/kubernetes/kubelet/kubelet-config.json": `{"kind":"KubeletConfiguration","clusterDNS":["10.100.0.10"]}`,
				"etc/resolv.conf":                            "nameserver 10.0.0.2\n",
			},
			wantPath: "etc/kubernetes/kubelet/kubelet-config.json", wantDNS: "10.100.0.10", wantResolvers: "10.0.0.2",
		},
		{
			// resolvConf names a file that is missing: fall back to etc/resolv.conf.
			name: "resolvconf-missing",
			files: map[string]string{
				"var/lib/kubelet/config.yaml": "kind: KubeletConfiguration\nclusterDNS: [10.96.0.10]\nresolvConf: /run/nope/resolv.conf\n",
				"etc/resolv.conf":             "nameserver 192.0.2.9\n",
			},
			wantPath: "var/lib/kubelet/config.yaml", wantDNS: "10.96.0.10", wantResolvers: "192.0.2.9",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for p, c := range tc.files {
				writeHostFile(t, root, p, c)
			}
			kc := hostdns.FindKubeletConfig(root)
			if kc.Err != nil || kc.Path != filepath.Join(root, tc.wantPath) {
				t.Fatalf("hostdns.FindKubeletConfig: path %s err %v, want %s", kc.Path, kc.Err, tc.wantPath)
			}
			cfg := testConfig(t)
			h := newAgent(t, admin(t), "node-hostdns-"+tc.name, cfg, func(o *Options) { o.HostRoot = root })
			st := h.a.ProbeOnce(context.Background())
			if got := strings.Join(st.ClusterDNS, ","); got != tc.wantDNS {
				t.Errorf("clusterDNS %q, want %q", got, tc.wantDNS)
			}
			if got := strings.Join(st.NodeResolvers, ","); got != tc.wantResolvers {
				t.Errorf("node resolvers %q, want %q", got, tc.wantResolvers)
			}
			onDisk, err := nodestate.Read(h.a.StatePath())
			if err != nil || strings.Join(onDisk.ClusterDNS, ",") != tc.wantDNS {
				t.Errorf("state file: %+v %v", onDisk, err)
			}
		})
	}
}

// The runtime's default handler goes into the node state: from containerd's
// config under the host root, or "" when no runtime config is found.
func TestDefaultRuntimeHandlerInNodeState(t *testing.T) {
	for _, tc := range []struct {
		name, file, body, want string
	}{
		{"gvisor-default", runtimehandler.ContainerdConfig, "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"runsc\"\n", "runsc"},
		{"crio-crun", runtimehandler.CRIOConfig, "[crio.runtime]\ndefault_runtime = \"crun\"\n", "crun"},
		{"unknown", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.file != "" {
				writeHostFile(t, root, tc.file, tc.body)
			}
			h := newAgent(t, admin(t), "node-rth-"+tc.name, testConfig(t), func(o *Options) { o.HostRoot = root })
			h.a.ProbeOnce(context.Background())
			onDisk, err := nodestate.Read(h.a.StatePath())
			if err != nil || onDisk.DefaultRuntimeHandler != tc.want {
				t.Errorf("node state default handler %q (%v), want %q", onDisk.DefaultRuntimeHandler, err, tc.want)
			}
		})
	}
}

// Nothing found: the error names the host root and the paths tried, and
// the agent falls back to the config's clusterDNS.
func TestHostDNSNotFound(t *testing.T) {
	root := t.TempDir()
	writeHostFile(t, root, "etc/kubernetes/kubelet.conf", kubeadmKubeconfig)
	kc := hostdns.FindKubeletConfig(root)
	if kc.Err == nil || !strings.Contains(kc.Err.Error(), root) || !strings.Contains(kc.Err.Error(), "/etc/kubernetes/kubelet.conf") || !strings.Contains(kc.Err.Error(), "--kubelet-config") {
		t.Fatalf("error: %v", kc.Err)
	}
	cfg := testConfig(t)
	cfg.ClusterDNS = []string{"10.0.0.10"}
	h := newAgent(t, admin(t), "node-hostdns-none", cfg, func(o *Options) { o.HostRoot = root })
	if st := h.a.ProbeOnce(context.Background()); strings.Join(st.ClusterDNS, ",") != "10.0.0.10" || len(st.NodeResolvers) != 0 {
		t.Fatalf("fallback: %+v", st)
	}
	if _, err := hostdns.ReadKubeletConfig(filepath.Join(root, "missing.yaml")); err == nil {
		t.Fatal("missing explicit kubelet config accepted")
	}
	writeHostFile(t, root, "bad.yaml", "clusterDNS: [not-an-ip]\n")
	if _, err := hostdns.ReadKubeletConfig(filepath.Join(root, "bad.yaml")); err == nil || !strings.Contains(err.Error(), `"not-an-ip"`) {
		t.Fatalf("bad clusterDNS: %v", err)
	}
}
