// Command demo is `make demo`: the project's main job on this machine, with
// no cluster. It runs the capability probe, starts a real kube-apiserver (on
// Debian's etcd), creates an AuthBridge pod object, then drives the real CNI
// chain (loopback, bridge + host-local, authbridge-cni) through libcni into a
// fresh network namespace, exactly as a container runtime does, and shows
// what the pod's traffic does afterwards.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/pkg/capability"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

const (
	podNS      = "demo"
	podName    = "agent-app"
	gatewayV4  = "10.77.0.1"
	outsideV4  = "93.184.216.34" // an Internet address: never reached, redirected
	clusterDNS = "10.77.0.1"     // the bridge gateway stands in for cluster DNS
)

func main() {
	redirecttest.HelperMain() // re-executed as the UID-1337 / app client
	binDir := flag.String("cni-bin-dir", "bin/cni", "directory with loopback, bridge, host-local and authbridge-cni")
	backend := flag.String("backend", "", "force one redirect backend (default: the best one the probe finds)")
	flag.Parse()
	if err := run(*binDir, *backend); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

func step(format string, a ...any) { fmt.Printf("\n==> "+format+"\n", a...) }
func show(format string, a ...any) { fmt.Printf("    "+format+"\n", a...) }

func run(binDir, forced string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	binDir, _ = filepath.Abs(binDir)
	work, err := os.MkdirTemp("", "authbridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	step("1. Capability probe: a real TCP connection through each backend's REDIRECT, in a throw-away netns")
	results := capability.Probe(ctx, redirect.AllBackends, capability.Options{})
	var working []string
	for _, r := range results {
		verdict := "works"
		if !r.Works {
			verdict = "FAILS: " + r.Error
		} else {
			working = append(working, r.Backend)
		}
		show("%-16s %-8s %s", r.Backend, r.Duration.Round(time.Millisecond), verdict)
	}
	if len(working) == 0 {
		return fmt.Errorf("no redirect backend works on this machine")
	}
	backends := working
	if forced != "" {
		backends = []string{forced}
	}
	stateDir := filepath.Join(work, "state")
	if err := nodestate.Write(filepath.Join(stateDir, nodestate.FileName), nodestate.State{
		ProbedAt: time.Now(), Results: results, ClusterDNS: []string{clusterDNS},
	}); err != nil {
		return err
	}

	step("2. A real kube-apiserver (Debian etcd) holding the pod, as the plugin reads it in a cluster")
	t0 := time.Now()
	srv, err := apiserver.New(ctx, apiserver.Options{})
	if err != nil {
		return fmt.Errorf("start kube-apiserver: %w", err)
	}
	defer srv.Stop()
	show("kube-apiserver %s ready at %s in %s", apiserver.KubeVersion, srv.URL, time.Since(t0).Round(time.Second))
	cs, err := kubernetes.NewForConfig(srv.AdminConfig())
	if err != nil {
		return err
	}
	podUID, err := createPod(ctx, cs)
	if err != nil {
		return err
	}
	show("pod %s/%s: containers app + authbridge-proxy (UID 1337); no init container, no NET_ADMIN", podNS, podName)
	kubeconfig := filepath.Join(work, "kubeconfig")
	if err := os.WriteFile(kubeconfig, srv.AdminKubeconfig(), 0o600); err != nil {
		return err
	}

	step("3. The container runtime's view: CNI ADD of loopback, then of the chain [bridge+host-local, authbridge-cni]")
	netns, err := testutils.NewNS()
	if err != nil {
		return fmt.Errorf("create pod netns: %w", err)
	}
	defer func() { netns.Close(); _ = testutils.UnmountNS(netns) }()
	// The bridge lives in this (host) netns; remove it whatever happens.
	defer func() { _ = exec.Command("ip", "link", "del", "abdemo0").Run() }()
	list, err := libcni.ConfListFromBytes([]byte(conflist(kubeconfig, stateDir, filepath.Join(work, "cni.log"), backends)))
	if err != nil {
		return fmt.Errorf("conflist: %w", err)
	}
	cninet := libcni.NewCNIConfig([]string{binDir}, nil)
	rt := &libcni.RuntimeConf{
		ContainerID: "demo-sandbox-0001",
		NetNS:       netns.Path(),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"}, // as containerd and CRI-O pass it
			{"K8S_POD_NAMESPACE", podNS}, {"K8S_POD_NAME", podName}, {"K8S_POD_UID", podUID},
		},
	}
	// containerd and CRI-O run loopback as a network of its own, first.
	lo, err := libcni.ConfFromBytes([]byte(`{"cniVersion":"1.1.0","name":"cni-loopback","type":"loopback"}`))
	if err != nil {
		return err
	}
	if _, err := cninet.AddNetwork(ctx, lo, rt); err != nil {
		return fmt.Errorf("CNI ADD loopback: %w", err)
	}
	t0 = time.Now()
	res, err := cninet.AddNetworkList(ctx, list, rt)
	if err != nil {
		return fmt.Errorf("CNI ADD: %w", err)
	}
	show("ADD succeeded in %s; prevResult passed through unchanged:", time.Since(t0).Round(time.Millisecond))
	b, _ := json.Marshal(res)
	show("%s", b)
	rules, _ := redirecttest.Output(netns, "nft", "list", "table", "ip", redirect.NFTTableName)
	if strings.TrimSpace(rules) == "" || strings.Contains(rules, "No such file") {
		rules, _ = redirecttest.Output(netns, "iptables-save")
	}
	step("4. Rules in the pod's netns, read back from the kernel (backend %s)", backends[0])
	for _, l := range strings.Split(strings.TrimSpace(rules), "\n") {
		show("%s", l)
	}

	step("5. Traffic from inside the pod")
	// The stand-in proxy: a listener on 8082 that names the original destination.
	proxy, err := listenIn(netns, "tcp", "0.0.0.0:8082")
	if err != nil {
		return err
	}
	go serve(proxy, func(c *net.TCPConn) string {
		od, err := redirect.OriginalDst(c)
		if err != nil {
			return "redirected, SO_ORIGINAL_DST failed: " + err.Error()
		}
		return "redirected " + od.String()
	})
	// A host-side server the proxy UID reaches directly.
	direct, err := net.Listen("tcp", gatewayV4+":9443")
	if err != nil {
		return err
	}
	defer direct.Close()
	go serve(direct.(*net.TCPListener), func(c *net.TCPConn) string { return "direct " + c.LocalAddr().String() })

	out, err := redirecttest.RunHelper(netns, 1000, "tcp", outsideV4+":443")
	show("app (uid 1000)   TCP -> %s:443      : %s", outsideV4, result(out, err))
	out, err = redirecttest.RunHelper(netns, 1000, "tcp", gatewayV4+":9443")
	show("app (uid 1000)   TCP -> %s:9443       : %s", gatewayV4, result(out, err))
	out, err = redirecttest.RunHelper(netns, redirect.DefaultProxyUID, "tcp", gatewayV4+":9443")
	show("proxy (uid 1337) TCP -> %s:9443       : %s", gatewayV4, result(out, err))
	udp, err := net.ListenPacket("udp", gatewayV4+":5353")
	if err != nil {
		return err
	}
	defer udp.Close()
	dns, err := net.ListenPacket("udp", clusterDNS+":53")
	if err != nil {
		return err
	}
	defer dns.Close()
	go echo(udp)
	go echo(dns)
	out, err = redirecttest.RunHelper(netns, 1000, "udp", gatewayV4+":5353")
	show("app (uid 1000)   UDP -> %s:5353 (QUIC-like): %s", gatewayV4, result(out, err))
	out, err = redirecttest.RunHelper(netns, 1000, "udp", clusterDNS+":53")
	show("app (uid 1000)   UDP -> %s:53 (cluster DNS): %s", clusterDNS, result(out, err))

	step("6. CHECK, a flushed ruleset, CHECK again, DEL twice")
	if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("CHECK on intact rules failed: %w", err)
	}
	show("CHECK on intact rules: ok")
	_, _ = redirecttest.Output(netns, "nft", "flush", "ruleset")
	_, _ = redirecttest.Output(netns, "iptables", "-t", "nat", "-F")
	if err := cninet.CheckNetworkList(ctx, list, rt); err != nil {
		show("CHECK after `nft flush ruleset`: fails as it must: %v", err)
	} else {
		return fmt.Errorf("CHECK passed on a flushed ruleset")
	}
	for i := 1; i <= 2; i++ {
		if err := cninet.DelNetworkList(ctx, list, rt); err != nil {
			return fmt.Errorf("DEL #%d: %w", i, err)
		}
		show("DEL #%d: ok", i)
	}
	step("Done. Plugin log (%s):", "structured JSON, one line per operation")
	if log, err := os.ReadFile(filepath.Join(work, "cni.log")); err == nil {
		sc := bufio.NewScanner(strings.NewReader(string(log)))
		for sc.Scan() {
			show("%s", sc.Text())
		}
	}
	return nil
}

func result(out string, err error) string {
	if err != nil {
		msg := err.Error()
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		return "BLOCKED (" + msg + ")"
	}
	return out
}

func conflist(kubeconfig, stateDir, logFile string, backends []string) string {
	bk, _ := json.Marshal(backends)
	return fmt.Sprintf(`{
  "cniVersion": "1.1.0",
  "name": "demo",
  "plugins": [
    {"type": "bridge", "bridge": "abdemo0", "isGateway": true, "ipMasq": false,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.77.0.0/24", "gateway": %q}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": %q}},
    {"type": "authbridge-cni", "kubeconfig": %q, "stateDir": %q, "logFile": %q, "backends": %s}
  ]
}`, gatewayV4, filepath.Join(stateDir, "ipam"), kubeconfig, stateDir, logFile, bk)
}

func createPod(ctx context.Context, cs kubernetes.Interface) (string, error) {
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: podNS}}, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create namespace: %w", err)
	}
	// No controller manager runs here: create the default ServiceAccount the
	// ServiceAccount admission plugin insists on.
	if _, err := cs.CoreV1().ServiceAccounts(podNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		return "", fmt.Errorf("create service account: %w", err)
	}
	uid := int64(redirect.DefaultProxyUID)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: podNS},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{
				{Name: "app", Image: "example/app"},
				{Name: "authbridge-proxy", Image: "example/authbridge-proxy", SecurityContext: &corev1.SecurityContext{RunAsUser: &uid}},
			},
		},
	}
	created, err := cs.CoreV1().Pods(podNS).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("create pod: %w", err)
	}
	return string(created.UID), nil
}

func listenIn(n ns.NetNS, network, addr string) (*net.TCPListener, error) {
	var l net.Listener
	err := n.Do(func(ns.NetNS) error {
		var err error
		l, err = net.Listen(network, addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listen in pod netns: %w", err)
	}
	return l.(*net.TCPListener), nil
}

func serve(l *net.TCPListener, line func(*net.TCPConn) string) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return
		}
		fmt.Fprintln(c, line(c))
		c.Close()
	}
}

func echo(pc net.PacketConn) {
	buf := make([]byte, 512)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo([]byte("answered: "+string(buf[:n])), from)
	}
}
