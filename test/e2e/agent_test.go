//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var redirectBackends = map[string]bool{"nftables": true, "iptables-nft": true, "iptables-legacy": true}

// Scenario 1: the agent DaemonSet is ready on all 3 nodes, the plugin is the
// last entry of every node's primary conflist, and every node is labelled.
func TestAgentReadyOnAllNodes(t *testing.T) {
	e := newEnv(t)
	ds := e.agentDaemonSet(t)
	eventually(t, defaultWaitTimeout, "agent DaemonSet ready on 3 nodes", func() error {
		d, err := e.cs.AppsV1().DaemonSets(ds.Namespace).Get(context.Background(), ds.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s := d.Status
		if s.DesiredNumberScheduled != 3 || s.NumberReady != 3 || s.UpdatedNumberScheduled != 3 {
			return fmt.Errorf("desired %d ready %d updated %d", s.DesiredNumberScheduled, s.NumberReady, s.UpdatedNumberScheduled)
		}
		return nil
	})
	for _, n := range e.nodes() {
		if multusVariant() {
			// multus-attachment: the conf dir is not touched; the entry is
			// in the file the NetworkAttachmentDefinition names.
			eventually(t, 30*time.Second, "plugin entry file on "+n, func() error { return attachmentInstalled(t, n) })
		} else {
			eventually(t, 30*time.Second, "plugin in conflist of "+n, func() error {
				types, err := conflistPlugins(t, n)
				if err != nil {
					return err
				}
				if !hasAuthbridgePlugin(types) {
					return fmt.Errorf("plugin chain %v has no authbridge entry last", types)
				}
				return nil
			})
		}
		eventually(t, 30*time.Second, "capability labels on "+n, func() error {
			node, err := e.cs.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if b := node.Labels[labelRedirect]; !redirectBackends[b] {
				return fmt.Errorf("%s=%q, want one of nftables|iptables-nft|iptables-legacy", labelRedirect, b)
			}
			if c := node.Labels[labelCapable]; c != "true" {
				return fmt.Errorf("%s=%q, want true", labelCapable, c)
			}
			return nil
		})
		node, _ := e.cs.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
		t.Logf("node %s: %s=%s %s=%s", n, labelRedirect, node.Labels[labelRedirect], labelCapable, node.Labels[labelCapable])
	}
}

// record mirrors standin-sidecar's Record.
type record struct {
	Source   string `json:"source"`
	OrigDst  string `json:"origDst"`
	Onward   string `json:"onward"`
	DialErr  string `json:"dialErr"`
	ProxyUID int    `json:"proxyUID"`
}

func (e *env) sidecarRecords(t *testing.T, ns, pod string) []record {
	t.Helper()
	out, err := e.podExec(ns, pod, sidecarName, "/netcheck", "get", "http://127.0.0.1:8099/")
	if err != nil {
		t.Fatalf("read sidecar records: %v: %s", err, out)
	}
	var recs []record
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("parse sidecar records %q: %v", out, err)
	}
	return recs
}

// server starts the netcheck server pod on node, with a Service (HTTP 80 ->
// 8080, UDP 9090), and returns the Service's ClusterIP and the pod.
func (e *env) server(t *testing.T, ns, node string) (string, *corev1.Pod) {
	t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "server", Labels: map[string]string{"e2e": "server"}},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: int64p(1),
			NodeSelector:                  map[string]string{"kubernetes.io/hostname": node},
			Containers: []corev1.Container{{
				Name: "server", Image: e.testImage, ImagePullPolicy: corev1.PullNever,
				Command: []string{"/netcheck", "serve"},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
					HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
			}},
		},
	}
	e.createPod(t, ns, p)
	svc, err := e.cs.CoreV1().Services(ns).Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "server"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"e2e": "server"},
			Ports: []corev1.ServicePort{
				{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP},
				{Name: "udp", Port: 9090, TargetPort: intstr.FromInt32(9090), Protocol: corev1.ProtocolUDP},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service: %v", err)
	}
	return svc.Spec.ClusterIP, e.waitRunning(t, ns, "server")
}

// Scenario 2 (and 3): an enforce-redirect pod with the stand-in sidecar on
// one worker calls a Service in another namespace whose pod is on the other
// worker: the connection arrives at the sidecar with the original
// destination, and the sidecar's own onward connection goes direct. UDP
// other than DNS is dropped; DNS to the cluster DNS works.
func TestEnforceRedirectAcrossNodes(t *testing.T) {
	e := newEnv(t)
	srvNS := e.namespace(t, "e2e-srv")
	cliNS := e.namespace(t, "e2e-cli")
	clusterIP, srv := e.server(t, srvNS, e.workers[0])

	pod := e.appPod("client", "enforce-redirect", e.workers[1], true)
	for _, c := range append(pod.Spec.InitContainers, pod.Spec.Containers...) {
		if c.SecurityContext != nil && c.SecurityContext.Capabilities != nil && len(c.SecurityContext.Capabilities.Add) > 0 {
			t.Fatalf("test bug: container %s adds capabilities", c.Name)
		}
	}
	if len(pod.Spec.InitContainers) != 0 {
		t.Fatal("test bug: the pod must have no init container")
	}
	e.createPod(t, cliNS, pod)
	cli := e.waitRunning(t, cliNS, "client")
	if cli.Spec.NodeName == srv.Spec.NodeName {
		t.Fatalf("client and server both on %s; want different nodes", cli.Spec.NodeName)
	}

	url := fmt.Sprintf("http://server.%s.svc.cluster.local/", srvNS)
	out, err := e.podExec(cliNS, "client", "app", "/netcheck", "get", url)
	if err != nil {
		t.Fatalf("app GET %s: %v: %s", url, err, out)
	}
	// the server answers "<hostname> <remote addr>": the pod reached it
	f := strings.Fields(out)
	if len(f) != 2 || f[0] != "server" {
		t.Fatalf("unexpected answer %q", out)
	}
	recs := e.sidecarRecords(t, cliNS, "client")
	want := net.JoinHostPort(clusterIP, "80")
	var hits []record
	for _, r := range recs {
		if r.OrigDst == want {
			hits = append(hits, r)
		}
	}
	if len(hits) != 1 {
		t.Fatalf("sidecar records for %s: got %d, want exactly 1 (all records: %+v)", want, len(hits), recs)
	}
	r := hits[0]
	if r.DialErr != "" || r.ProxyUID != proxyUID {
		t.Fatalf("sidecar record %+v: want onward dial ok as UID %d", r, proxyUID)
	}
	// the server saw the sidecar's onward connection, from the pod's own IP
	remote, _, _ := net.SplitHostPort(f[1])
	onward, _, _ := net.SplitHostPort(r.Onward)
	if remote != cli.Status.PodIP || onward != cli.Status.PodIP {
		t.Fatalf("server saw %s, sidecar dialed from %s; want the client pod IP %s", remote, onward, cli.Status.PodIP)
	}
	t.Logf("app -> %s arrived at the sidecar with original destination %s; sidecar went on from %s", url, r.OrigDst, r.Onward)

	// the sidecar's own traffic is not redirected back to itself
	before := len(e.sidecarRecords(t, cliNS, "client"))
	if out, err := e.podExec(cliNS, "client", sidecarName, "/netcheck", "get", url); err != nil {
		t.Fatalf("sidecar's own GET %s: %v: %s", url, err, out)
	}
	if after := len(e.sidecarRecords(t, cliNS, "client")); after != before {
		t.Fatalf("the sidecar's own connection was redirected (records %d -> %d)", before, after)
	}

	t.Run("UDPDroppedDNSAllowed", func(t *testing.T) {
		udpDst := net.JoinHostPort(srv.Status.PodIP, "9090")
		// control: a pod without the plugin's rules reaches the UDP echo
		plain := e.appPod("plain", "", e.workers[1], false)
		e.createPod(t, cliNS, plain)
		e.waitRunning(t, cliNS, "plain")
		if out, err := e.podExec(cliNS, "plain", "app", "/netcheck", "udp", udpDst); err != nil {
			t.Fatalf("control pod UDP to %s: %v: %s", udpDst, err, out)
		}
		if out, err := e.podExec(cliNS, "client", "app", "/netcheck", "udp", udpDst); err == nil {
			t.Fatalf("enforce-redirect pod's UDP to %s got through: %s", udpDst, out)
		}
		if out, err := e.podExec(cliNS, "client", "app", "/netcheck", "dns", "kubernetes.default.svc.cluster.local"); err != nil {
			t.Fatalf("DNS from the enforce-redirect pod: %v: %s", err, out)
		}
	})
}
