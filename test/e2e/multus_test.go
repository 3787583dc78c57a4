//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenarios of issue 14 for E2E_VARIANT=multus (test/e2e/variant-multus.sh):
// Multus v4.1.0's thin plugin is every node's CNI, delegating to the ptp
// network (its clusterNetwork, 10-kindnet.conflist) with namespace
// isolation as on OpenShift; the agent runs in cniInstallMode auto and
// picks multus-attachment; AuthBridge pods request default/authbridge-cni.

const (
	multusConf   = "/etc/cni/net.d/00-multus.conf"
	entryFile    = "/var/lib/authbridge/authbridge-cni-entry.json"
	recordsDir   = "/var/run/authbridge/containers"
	pluginBinary = "/opt/cni/bin/authbridge-cni"
)

func needMultus(t *testing.T) {
	t.Helper()
	if !multusVariant() {
		t.Skip("needs E2E_VARIANT=multus (Multus as the cluster's CNI)")
	}
}

// attachmentInstalled: the node's entry file is there and neither Multus'
// config nor its clusterNetwork conflist carries our entry.
func attachmentInstalled(t *testing.T, node string) error {
	if out, err := nodeExec(t, node, "cat", entryFile); err != nil || !strings.Contains(out, `"type":"authbridge-cni"`) {
		return fmt.Errorf("entry file %s on %s: %v: %s", entryFile, node, err, out)
	}
	for _, f := range []string{multusConf, primaryConflist} {
		out, err := nodeExec(t, node, "cat", f)
		if err != nil {
			return fmt.Errorf("read %s on %s: %v: %s", f, node, err, out)
		}
		if strings.Contains(out, "authbridge") {
			return fmt.Errorf("%s on %s carries our entry in multus-attachment mode: %s", f, node, out)
		}
	}
	return nil
}

// podRecord is the plugin's record of a pod on its node: the one written by
// an ADD (named by the sandbox ID), never the agent's in-place repair
// record (repair-<pod UID>).
type podRecord struct {
	file        string
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	Netns       string `json:"netns"`
	PodUID      string `json:"podUID"`
	Mode        string `json:"mode"`
	Backend     string `json:"backend"`
}

func podRecords(t *testing.T, node string) ([]podRecord, error) {
	t.Helper()
	out, err := nodeExec(t, node, "sh", "-c", `for f in `+recordsDir+`/*.json; do [ -e "$f" ] || continue; printf '%s ' "$f"; tr -d '\n' < "$f"; echo; done`)
	if err != nil {
		return nil, fmt.Errorf("list records on %s: %v: %s", node, err, out)
	}
	var recs []podRecord
	for _, ln := range strings.Split(strings.TrimSpace(out), "\n") {
		file, body, ok := strings.Cut(ln, " ")
		if !ok {
			continue
		}
		r := podRecord{file: file}
		if err := json.Unmarshal([]byte(body), &r); err != nil {
			return nil, fmt.Errorf("record %s on %s: %v", file, node, err)
		}
		recs = append(recs, r)
	}
	return recs, nil
}

// addRecordOf returns the ADD record of the pod with this UID, or an error
// saying what there is instead.
func addRecordOf(t *testing.T, node, uid string) (podRecord, error) {
	recs, err := podRecords(t, node)
	if err != nil {
		return podRecord{}, err
	}
	for _, r := range recs {
		if r.PodUID != uid {
			continue
		}
		if strings.Contains(r.file, "/repair-") {
			return r, fmt.Errorf("pod %s has only the agent's repair record %s: it started without rules", uid, r.file)
		}
		return r, nil
	}
	return podRecord{}, fmt.Errorf("no record of pod %s on %s", uid, node)
}

// pluginCmd runs our plugin on the node the way Multus runs the NAD's
// delegate: the NAD's config on stdin, interface net1.
func (e *env) pluginCmd(t *testing.T, node, cmd string, r podRecord, ns, name string) (string, error) {
	t.Helper()
	nad, err := e.kubectl("get", "net-attach-def", "-n", "default", "authbridge-cni", "-o", "jsonpath={.spec.config}")
	if err != nil {
		t.Fatalf("read the NAD: %v: %s", err, nad)
	}
	script := fmt.Sprintf(`CNI_COMMAND=%s CNI_CONTAINERID=%s CNI_NETNS=%s CNI_IFNAME=net1 CNI_PATH=/opt/cni/bin CNI_ARGS='IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;K8S_POD_UID=%s' %s <<'EOF'
%s
EOF`, cmd, r.ContainerID, r.Netns, ns, name, r.PodUID, pluginBinary, nad)
	return nodeExec(t, node, "sh", "-c", script)
}

// TestMultusAttachment: the conf dir is Multus' and the primary CNI's
// alone; an AuthBridge pod without the attachment is refused at
// admission; one with it gets its rules from the attachment (ADD record,
// condition Verified); our CHECK, run as Multus runs the delegate, passes,
// fails once the rules are flushed, and passes again after the agent's
// drift repair (Multus v4.1.0's own CHECK never reaches attachments:
// CmdCheck walks only the delegates of its config); deleting the pod runs
// our DEL through Multus (its delegate cache) and removes the record.
func TestMultusAttachment(t *testing.T) {
	needMultus(t)
	e := newEnv(t)
	for _, n := range e.nodes() {
		if err := attachmentInstalled(t, n); err != nil {
			t.Fatal(err)
		}
	}
	ns := e.namespace(t, "e2e-multus")
	bare := e.appPod("no-attachment", "enforce-redirect", e.workers[0], true)
	delete(bare.Annotations, attachmentAnnotation)
	if _, err := e.cs.CoreV1().Pods(ns).Create(context.Background(), bare, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "authbridge-pod-attachment") {
		t.Fatalf("AuthBridge pod without the attachment: %v; want refused by authbridge-pod-attachment", err)
	}

	start := time.Now()
	e.createPod(t, ns, e.appPod("client", "enforce-redirect", e.workers[0], true))
	pod := e.waitRunning(t, ns, "client")
	e.waitEnforced(t, ns, "client", start)
	node := pod.Spec.NodeName
	var rec podRecord
	eventually(t, 30*time.Second, "ADD record of the pod", func() error {
		var err error
		rec, err = addRecordOf(t, node, string(pod.UID))
		return err
	})
	if rec.IfName != "net1" || rec.Mode != "enforce-redirect" || rec.Backend == "" {
		t.Fatalf("record %+v: want the attachment's net1, enforce-redirect, a backend", rec)
	}
	if out, err := e.pluginCmd(t, node, "CHECK", rec, ns, "client"); err != nil {
		t.Fatalf("CHECK after ADD: %v: %s", err, out)
	}
	flush := map[string]string{
		"nftables":        "nft flush ruleset",
		"iptables-nft":    "iptables-nft -t nat -F; iptables-nft -F; ip6tables-nft -t nat -F; ip6tables-nft -F",
		"iptables-legacy": "iptables-legacy -t nat -F; iptables-legacy -F; ip6tables-legacy -t nat -F; ip6tables-legacy -F",
	}[rec.Backend]
	flushedAt := time.Now()
	if out, err := nodeExec(t, node, "nsenter", "--net="+rec.Netns, "sh", "-c", flush); err != nil {
		t.Fatalf("flush %s rules in the pod: %v: %s", rec.Backend, err, out)
	}
	if out, err := e.pluginCmd(t, node, "CHECK", rec, ns, "client"); err == nil || !strings.Contains(out, "no longer match") {
		t.Fatalf("CHECK after a flush: %v: %s; want a failure saying the rules no longer match", err, out)
	}
	eventually(t, 2*verifyInterval+30*time.Second, "drift repaired, CHECK passes again", func() error {
		out, err := e.pluginCmd(t, node, "CHECK", rec, ns, "client")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	t.Logf("CHECK failed after the flush and passed again %s later (agent drift repair)", time.Since(flushedAt).Round(time.Second))

	if err := e.cs.CoreV1().Pods(ns).Delete(context.Background(), "client", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 90*time.Second, "the pod's record removed by DEL through Multus", func() error {
		recs, err := podRecords(t, node)
		if err != nil {
			return err
		}
		for _, r := range recs {
			if r.PodUID == string(pod.UID) {
				return fmt.Errorf("record %s still there", r.file)
			}
		}
		return nil
	})
}

// TestMultusRewriteWhilePodsCreated: while 30 AuthBridge pods are created,
// every node's Multus config (00-multus.conf) and its clusterNetwork file
// (10-kindnet.conflist, the file ovnkube-node rewrites at each start on
// OpenShift) are rewritten every 200 ms, and the Multus binary is replaced
// every third round (an upgrade; the thin plugin has no daemon to
// restart). Every pod must get its rules from its own ADD: an ADD record
// for each pod, none repaired in place, no EgressRulesMissing Event.
func TestMultusRewriteWhilePodsCreated(t *testing.T) {
	needMultus(t)
	e := newEnv(t)
	ns := e.namespace(t, "e2e-multus-churn")
	const n = 30
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	rounds := map[string]int{}
	var churnErr error
	for _, node := range e.nodes() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				level := []string{"verbose", "debug"}[i%2]
				script := `set -e
sed 's/"logLevel":"[a-z]*"/"logLevel":"` + level + `"/' ` + multusConf + ` > ` + multusConf + `.new && mv ` + multusConf + `.new ` + multusConf + `
cp ` + primaryConflist + ` /etc/cni/net.d/.kindnet.new && mv /etc/cni/net.d/.kindnet.new ` + primaryConflist
				if i%3 == 0 {
					script += `
cp /opt/cni/bin/multus /opt/cni/bin/.multus.new && mv /opt/cni/bin/.multus.new /opt/cni/bin/multus`
				}
				if out, err := nodeExec(t, node, "sh", "-c", script); err != nil {
					mu.Lock()
					churnErr = fmt.Errorf("rewrite on %s: %v: %s", node, err, out)
					mu.Unlock()
					return
				}
				mu.Lock()
				rounds[node]++
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("churn-%d", i)
		e.createPod(t, ns, e.appPod(names[i], "enforce-redirect", e.workers[i%2], true))
	}
	pods := map[string]*corev1.Pod{}
	for _, name := range names {
		pods[name] = e.waitRunning(t, ns, name)
	}
	allReady := time.Since(start)
	close(stop)
	wg.Wait()
	if churnErr != nil {
		t.Fatal(churnErr)
	}
	t.Logf("FIGURE %d AuthBridge pods Running in %s while Multus' config and clusterNetwork file were rewritten %v times per node (binary replaced every third)", n, allReady.Round(time.Second), rounds)
	for _, node := range e.nodes() {
		if rounds[node] < 3 {
			t.Fatalf("only %d rewrite rounds on %s during pod creation: the scenario did not churn", rounds[node], node)
		}
	}
	var without []string
	for _, name := range names {
		p := pods[name]
		if _, err := addRecordOf(t, p.Spec.NodeName, string(p.UID)); err != nil {
			without = append(without, name+": "+err.Error())
		}
		e.waitEnforced(t, ns, name, start)
	}
	ev, err := e.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "reason=EgressRulesMissing"})
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range ev.Items {
		without = append(without, x.InvolvedObject.Name+": EgressRulesMissing "+x.Message)
	}
	t.Logf("FIGURE AuthBridge pods without rules from their own ADD: %d of %d", len(without), n)
	if len(without) > 0 {
		t.Fatalf("pods without rules from their ADD:\n%s", strings.Join(without, "\n"))
	}
}
