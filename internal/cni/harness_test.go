package cni_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/containernetworking/plugins/pkg/testutils"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/redirecttest"
	"github.com/kagenti/authbridge-node/internal/testing/apiserver"
	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/pkg/capability"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// Shared by the tests of the package that drive the real chain, each made
// on first use so that the pure tests need none of them (and run as any user
// under -short): the built plugin binaries (pluginDir), one real
// kube-apiserver (apiserver.Shared, adminClient) and the real probe results
// of this kernel (probeResults).
var nsSerial atomic.Int64

func TestMain(m *testing.M) {
	// The traffic clients are re-executed copies of this binary.
	redirecttest.HelperMain()
	code := apiserver.RunTests(m)
	if plugins.dir != "" {
		os.RemoveAll(filepath.Dir(plugins.dir))
	}
	os.Exit(code)
}

var plugins struct {
	once sync.Once
	dir  string
	err  error
}

// pluginDir is the directory of the plugins built once for the package
// (bridge, host-local, loopback, authbridge-cni).
func pluginDir(t testing.TB) string {
	t.Helper()
	plugins.once.Do(func() {
		dir, err := os.MkdirTemp("", "authbridge-cni-test-")
		if err != nil {
			plugins.err = err
			return
		}
		plugins.dir = filepath.Join(dir, "bin")
		plugins.err = buildPlugins(plugins.dir)
	})
	if plugins.err != nil {
		t.Fatal(plugins.err)
	}
	return plugins.dir
}

// adminClient is a system:masters client of the package's API server.
func adminClient(t testing.TB) kubernetes.Interface {
	t.Helper()
	srv := apiserver.Shared(t)
	adminCS.once.Do(func() { adminCS.cs, adminCS.err = kubernetes.NewForConfig(srv.AdminConfig()) })
	if adminCS.err != nil {
		t.Fatal(adminCS.err)
	}
	return adminCS.cs
}

var adminCS struct {
	once sync.Once
	cs   kubernetes.Interface
	err  error
}

var probe struct {
	once    sync.Once
	results []nodestate.BackendResult
}

// probeResults are the real capability probe's results on this kernel: the
// node state lists them as working exactly as the node agent would. Root.
func probeResults(t testing.TB) []nodestate.BackendResult {
	t.Helper()
	testenv.Root(t, "network namespaces")
	probe.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		probe.results = capability.Probe(ctx, redirect.AllBackends, capability.Options{Families: []redirect.Family{redirect.IPv4, redirect.IPv6}})
		for _, r := range probe.results {
			fmt.Fprintf(os.Stderr, "probe %s: works=%v %s (%s)\n", r.Backend, r.Works, r.Error, r.Duration)
		}
	})
	return probe.results
}

// buildPlugins builds the real reference plugins and ours once per run.
func buildPlugins(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range []struct{ out, pkg string }{
		{"bridge", "github.com/containernetworking/plugins/plugins/main/bridge"},
		{"host-local", "github.com/containernetworking/plugins/plugins/ipam/host-local"},
		{"loopback", "github.com/containernetworking/plugins/plugins/main/loopback"},
		{"authbridge-cni", "github.com/kagenti/authbridge-node/cmd/cni-plugin"},
	} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, p.out), p.pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", p.pkg, err, out)
		}
	}
	return nil
}

// Addresses of the bridge network in every test's host netns.
var (
	subnetV4 = netip.MustParsePrefix("10.77.0.0/16")
	gwV4     = netip.MustParseAddr("10.77.0.1")
	subnetV6 = netip.MustParsePrefix("fd77::/64")
	gwV6     = netip.MustParseAddr("fd77::1")
)

const (
	peerTCPPort  = 9090 // the "outside" TCP server on the host side
	resolverPort = 53   // DNS stand-in (TCP+UDP) on the gateway
	otherUDPPort = 5353 // a UDP service that is not DNS
	appUID       = 1000
	proxyUID     = redirect.DefaultProxyUID
)

// env is one test's world: a host netns (the "node", holding the bridge), a
// state dir, a libcni runtime, and a kubeconfig reaching the real API
// server from inside the host netns.
type env struct {
	t          testing.TB
	host       ns.NetNS
	stateDir   string
	logFile    string
	ipamDir    string
	cacheDir   string
	kubeconfig string
	cni        *libcni.CNIConfig
	events     *eventLog
}

type envOpts struct {
	// state is the node state file content; nil writes the real probe
	// results with cluster DNS = the gateways. noState writes no file.
	state   *nodestate.State
	noState bool
	// deadAPI points the kubeconfig at a port nobody listens on.
	deadAPI bool
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	testenv.Root(t, "network namespaces")
	srv := apiserver.Shared(t)
	probed := probeResults(t)
	host, err := ns.TempNetNS()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { host.Close() })
	err = host.Do(func(ns.NetNS) error {
		if err := redirecttest.LinkUp("lo"); err != nil {
			return err
		}
		// The bridge exists up front with a fixed MAC: a bridge whose MAC
		// the kernel picks follows its lowest port's, which changes as
		// pods join and makes the bridge plugin's own CHECK fail.
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "abbr0", HardwareAddr: net.HardwareAddr{0x02, 0xab, 0, 0, 0, 1}}}
		if err := netlink.LinkAdd(br); err != nil {
			return fmt.Errorf("create bridge: %w", err)
		}
		if err := netlink.LinkSetHardwareAddr(br, br.HardwareAddr); err != nil {
			return fmt.Errorf("set bridge MAC: %w", err)
		}
		// IPv6 addresses usable at once (no duplicate address detection).
		for _, k := range []string{"all", "default"} {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/"+k+"/accept_dad", []byte("0"), 0o644); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	e := &env{t: t, host: host, stateDir: filepath.Join(dir, "state"), logFile: filepath.Join(dir, "log", "authbridge-cni.log"),
		ipamDir: filepath.Join(dir, "ipam"), cacheDir: filepath.Join(dir, "cache")}
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginDir(t)}, e.cacheDir, nil)
	if !o.noState {
		st := nodestate.State{ProbedAt: time.Now(), Results: probed, ClusterDNS: []string{gwV4.String(), gwV6.String()}}
		if o.state != nil {
			st = *o.state
		}
		if err := nodestate.Write(filepath.Join(e.stateDir, nodestate.FileName), st); err != nil {
			t.Fatal(err)
		}
	}
	apiURL := srv.URL
	if o.deadAPI {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		apiURL = "https://" + l.Addr().String()
		l.Close()
	} else {
		apiURL = "https://" + e.forwardAPI()
	}
	kc := strings.Replace(string(srv.AdminKubeconfig()), srv.URL, apiURL, 1)
	e.kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(e.kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	e.events = listenEvents(t, filepath.Join(e.stateDir, "plugin-events.sock"))
	return e
}

// forwardAPI makes the API server (on the root netns' loopback) reachable
// on the host netns' loopback: a listener created inside the host netns,
// dialling out from the root netns.
func (e *env) forwardAPI() string {
	var l net.Listener
	err := e.host.Do(func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { l.Close() })
	target := strings.TrimPrefix(apiserver.Shared(e.t).URL, "https://")
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				u, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer u.Close()
				go func() { _, _ = io.Copy(u, c); u.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(c, u)
			}()
		}
	}()
	return l.Addr().String()
}

// serveOutside starts, in the host netns, the TCP server on peerTCPPort and
// resolverPort ("direct <local addr>") and UDP echo servers on resolverPort
// and otherUDPPort ("udp <port>"), for both families.
func (e *env) serveOutside() {
	e.t.Helper()
	err := e.host.Do(func(ns.NetNS) error {
		for _, nw := range []string{"tcp4", "tcp6"} {
			for _, port := range []int{peerTCPPort, resolverPort} {
				l, err := net.Listen(nw, ":"+strconv.Itoa(port))
				if err != nil {
					return err
				}
				e.t.Cleanup(func() { l.Close() })
				go func() {
					for {
						c, err := l.Accept()
						if err != nil {
							return
						}
						fmt.Fprintln(c, "direct "+c.LocalAddr().String())
						c.Close()
					}
				}()
			}
		}
		for _, nw := range []string{"udp4", "udp6"} {
			for _, port := range []int{resolverPort, otherUDPPort} {
				pc, err := net.ListenPacket(nw, ":"+strconv.Itoa(port))
				if err != nil {
					return err
				}
				e.t.Cleanup(func() { pc.Close() })
				go func() {
					buf := make([]byte, 512)
					for {
						_, from, err := pc.ReadFrom(buf)
						if err != nil {
							return
						}
						_, _ = pc.WriteTo([]byte("udp "+strconv.Itoa(port)), from)
					}
				}()
			}
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

// abConf is the authbridge-cni conflist entry; extra overrides/adds keys.
func (e *env) abConf(extra map[string]any) map[string]any {
	c := map[string]any{
		"type":       "authbridge-cni",
		"kubeconfig": e.kubeconfig,
		"logFile":    e.logFile,
		"stateDir":   e.stateDir,
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// conflist is [bridge + host-local, authbridge-cni] for the families
// ([bridge + host-local] when ab is nil).
func (e *env) conflist(name string, fams []redirect.Family, ab map[string]any) *libcni.NetworkConfigList {
	e.t.Helper()
	var ranges []any
	for _, f := range fams {
		sub := subnetV4
		if f == redirect.IPv6 {
			sub = subnetV6
		}
		ranges = append(ranges, []any{map[string]any{"subnet": sub.String()}})
	}
	plugins := []any{
		map[string]any{
			"type": "bridge", "bridge": "abbr0", "isGateway": true, "ipMasq": false,
			"ipam": map[string]any{"type": "host-local", "dataDir": e.ipamDir, "ranges": ranges},
		},
	}
	if ab != nil { // nil: the primary network alone (the plugin runs as an attachment)
		plugins = append(plugins, ab)
	}
	list := map[string]any{
		"cniVersion": "1.1.0",
		"name":       name,
		"plugins":    plugins,
	}
	b, err := json.Marshal(list)
	if err != nil {
		e.t.Fatal(err)
	}
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

// pod is one sandbox: its netns and runtime args.
type pod struct {
	netns ns.NetNS
	rt    *libcni.RuntimeConf
	topo  *redirecttest.Topology
}

// newPod makes a named netns (the runtime's CNI_NETNS), runs the loopback
// plugin in it like a runtime does, and prepares the runtime args.
func (e *env) newPod(namespace, name, uid string) *pod {
	e.t.Helper()
	n, err := testutils.NewNS()
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { n.Close(); _ = testutils.UnmountNS(n) })
	err = n.Do(func(ns.NetNS) error {
		return os.WriteFile("/proc/sys/net/ipv6/conf/default/accept_dad", []byte("0"), 0o644)
	})
	if err != nil {
		e.t.Fatal(err)
	}
	id := fmt.Sprintf("c%d%x", nsSerial.Add(1), time.Now().UnixNano())
	args := [][2]string{{"IgnoreUnknown", "1"}}
	if namespace != "" {
		args = append(args, [2]string{"K8S_POD_NAMESPACE", namespace}, [2]string{"K8S_POD_NAME", name},
			[2]string{"K8S_POD_INFRA_CONTAINER_ID", id})
	}
	if uid != "" {
		args = append(args, [2]string{"K8S_POD_UID", uid})
	}
	p := &pod{netns: n, rt: &libcni.RuntimeConf{ContainerID: id, NetNS: n.Path(), IfName: "eth0", Args: args}, topo: &redirecttest.Topology{Pod: n}}
	lo, err := libcni.NetworkConfFromBytes([]byte(`{"cniVersion":"1.1.0","name":"lo","plugins":[{"type":"loopback"}]}`))
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.inHost(func() (any, error) { return e.cni.AddNetworkList(context.Background(), lo, p.rt) }); err != nil {
		e.t.Fatalf("loopback ADD: %v", err)
	}
	return p
}

// inHost runs f in the host netns: libcni's plugin processes inherit the
// calling thread's netns, so the bridge lands in the host netns.
func (e *env) inHost(f func() (any, error)) (any, error) {
	var out any
	err := e.host.Do(func(ns.NetNS) error {
		var err error
		out, err = f()
		return err
	})
	return out, err
}

func (e *env) add(l *libcni.NetworkConfigList, p *pod) error {
	_, err := e.inHost(func() (any, error) { return e.cni.AddNetworkList(context.Background(), l, p.rt) })
	return err
}

func (e *env) check(l *libcni.NetworkConfigList, p *pod) error {
	_, err := e.inHost(func() (any, error) { return nil, e.cni.CheckNetworkList(context.Background(), l, p.rt) })
	return err
}

func (e *env) del(l *libcni.NetworkConfigList, p *pod) error {
	_, err := e.inHost(func() (any, error) { return nil, e.cni.DelNetworkList(context.Background(), l, p.rt) })
	return err
}

func (e *env) containerStatePath(p *pod) string {
	return filepath.Join(e.stateDir, "containers", p.rt.ContainerID+".json")
}

// createPod creates namespace (if needed, with its default ServiceAccount:
// no controllers run) and an unscheduled pod object; returns the pod UID.
func createPod(t testing.TB, namespace, name string, ann map[string]string, sidecar bool, mut func(*corev1.Pod)) string {
	t.Helper()
	ctx := context.Background()
	admin := adminClient(t)
	if _, err := admin.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create namespace: %v", err)
		}
		if _, err := admin.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create service account: %v", err)
		}
	}
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example/app"}}}}
	if sidecar {
		p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: config.DefaultSidecarContainerName, Image: "example/proxy"})
	}
	if mut != nil {
		mut(p)
	}
	created, err := admin.CoreV1().Pods(namespace).Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s/%s: %v", namespace, name, err)
	}
	return string(created.UID)
}

func uniqueNS(prefix string) string { return fmt.Sprintf("%s-%d", prefix, nsSerial.Add(1)) }

// eventLog collects plugin events like the node agent would.
type eventLog struct {
	mu  sync.Mutex
	evs []map[string]any
}

func listenEvents(t testing.TB, path string) *eventLog {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("unixgram", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	el := &eventLog{}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(buf[:n], &m) == nil {
				el.mu.Lock()
				el.evs = append(el.evs, m)
				el.mu.Unlock()
			}
		}
	}()
	return el
}

// waitFor returns the first event matching all key/values, waiting briefly
// (datagrams are asynchronous to the plugin's exit).
func (el *eventLog) waitFor(t testing.TB, kv map[string]any) map[string]any {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		el.mu.Lock()
		for _, ev := range el.evs {
			ok := true
			for k, v := range kv {
				if ev[k] != v {
					ok = false
				}
			}
			if ok {
				el.mu.Unlock()
				return ev
			}
		}
		el.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	el.mu.Lock()
	defer el.mu.Unlock()
	t.Fatalf("no plugin event matching %v; got %v", kv, el.evs)
	return nil
}

// logLines returns the plugin's JSON log lines.
func (e *env) logLines() []map[string]any {
	f, err := os.Open(e.logFile)
	if err != nil {
		e.t.Fatalf("plugin log: %v", err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			e.t.Fatalf("plugin log line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// output runs a host binary inside the pod's netns.
func output(t testing.TB, n ns.NetNS, name string, args ...string) string {
	t.Helper()
	out, err := redirecttest.Output(n, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
