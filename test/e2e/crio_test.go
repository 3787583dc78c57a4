//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The CNI verbs as CRI-O v1.34.0 calls them (E2E_VARIANT=crio: both workers
// run CRI-O, hack/kind-node-image/node-crio.sh). What CRI-O does, from its
// source (server/sandbox_network.go, server/server.go,
// internal/config/cnimgr/cnimgr.go) and ocicni v0.4.3 (pkg/ocicni/ocicni.go):
//   - ADD, then at once CHECK: networkStart runs SetUpPod and then
//     GetPodNetworkStatus, which calls CheckNetworkList for cniVersion >= 0.4.0;
//     a failing CHECK fails the sandbox (and CRI-O tears it down with DEL).
//     CHECK again for every sandbox when CRI-O restarts (restoring the IPs).
//   - STATUS: polled every 500 ms from CRI-O's start until the first
//     success, never again; NetworkReady (the Node's Ready) is that result.
//   - GC: once per CRI-O start (after the first successful STATUS), with
//     every sandbox CRI-O knows as valid attachments.
//   - DEL: when a sandbox is stopped.

func crioEnv(t *testing.T) *env {
	t.Helper()
	if os.Getenv("E2E_VARIANT") != "crio" {
		t.Skip("needs the CRI-O workers: E2E_VARIANT=crio make e2e")
	}
	return newEnv(t)
}

const pluginLog = "/var/log/authbridge-cni.log"

// pluginLogSince returns the plugin log lines written after the first n lines.
func pluginLogSince(t *testing.T, node string, n int) []string {
	t.Helper()
	out, err := nodeExec(t, node, "sh", "-c", fmt.Sprintf("tail -n +%d %s", n+1, pluginLog))
	if err != nil {
		t.Fatalf("read %s on %s: %v: %s", pluginLog, node, err, out)
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func pluginLogLen(t *testing.T, node string) int {
	t.Helper()
	out, _ := nodeExec(t, node, "sh", "-c", "wc -l < "+pluginLog+" 2>/dev/null || echo 0")
	var n int
	fmt.Sscan(strings.TrimSpace(out), &n)
	return n
}

func grepLines(lines []string, all ...string) []string {
	var got []string
	for _, l := range lines {
		ok := true
		for _, s := range all {
			if !strings.Contains(l, s) {
				ok = false
			}
		}
		if ok {
			got = append(got, l)
		}
	}
	return got
}

// crioJournal returns CRI-O's log on node since the given time.
func crioJournal(t *testing.T, node string, since time.Time) string {
	t.Helper()
	out, err := nodeExec(t, node, "journalctl", "-u", "crio", "--no-pager", "-o", "cat", "--since", since.UTC().Format("2006-01-02 15:04:05 UTC"))
	if err != nil {
		t.Fatalf("journalctl -u crio on %s: %v: %s", node, err, out)
	}
	return out
}

func opCount(t *testing.T, e *env, node, op, result string) float64 {
	t.Helper()
	v, _ := metricSum(e.scrape(t, node), "authbridge_cni_operations_total", `op="`+op+`"`, `result="`+result+`"`)
	return v
}

// restartCRIO restarts CRI-O on node and waits for its socket to answer.
func restartCRIO(t *testing.T, node string) {
	t.Helper()
	if out, err := nodeExec(t, node, "systemctl", "restart", "crio"); err != nil {
		t.Fatalf("restart crio on %s: %v: %s", node, err, out)
	}
	eventually(t, time.Minute, "crio answers on "+node, func() error {
		out, err := nodeExec(t, node, "crictl", "version")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
}

// TestCRIOWorkers: the workers really run CRI-O (the runtime the kubelet
// reports and crictl's answer), the control-plane containerd.
func TestCRIOWorkers(t *testing.T) {
	e := crioEnv(t)
	for _, n := range e.nodes() {
		node, err := e.cs.CoreV1().Nodes().Get(context.Background(), n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		rt := node.Status.NodeInfo.ContainerRuntimeVersion
		out, _ := nodeExec(t, n, "crictl", "version")
		t.Logf("%s: %s; crictl version: %s", n, rt, strings.Join(strings.Fields(out), " "))
		want := "cri-o://"
		if n == e.controlNode {
			want = "containerd://"
		}
		if !strings.HasPrefix(rt, want) {
			t.Errorf("%s runs %s, want %s...", n, rt, want)
		}
	}
}

// TestCRIOCheckAfterAdd: on a CRI-O worker, every sandbox's ADD is followed
// by CRI-O's CHECK of the whole chain, and ours passes for each mode (the
// agent counts the plugin's successful CHECKs: one per ADD here, while
// containerd never calls CHECK); the plugin's log and CRI-O's show the
// order per pod.
// Then a pod's rules are flushed and CRI-O restarted: CRI-O's restore CHECK
// reaches our plugin, which reports the drift in its log (CRI-O only warns
// and keeps the pod); the agent re-applies the rules as on containerd.
func TestCRIOCheckAfterAdd(t *testing.T) {
	e := crioEnv(t)
	node := e.workers[0]
	ns := e.namespace(t, "e2e-crio-check")
	srvIP, _ := e.server(t, ns, e.workers[1])
	addBefore, checkBefore := opCount(t, e, node, "ADD", "success"), opCount(t, e, node, "CHECK", "success")
	checkFailBefore := opCount(t, e, node, "CHECK", "failure")
	since := time.Now().Add(-2 * time.Second)
	logN := pluginLogLen(t, node)
	pods := []string{"enforce-0", "enforce-1", "enforce-2", "plain-0"}
	for _, p := range pods {
		if strings.HasPrefix(p, "enforce") {
			e.createPod(t, ns, e.appPod(p, "enforce-redirect", node, true))
		} else {
			e.createPod(t, ns, e.appPod(p, "", node, false))
		}
	}
	for _, p := range pods {
		e.waitRunning(t, ns, p)
	}
	for _, p := range pods[:3] {
		if err := e.redirectWorks(ns, p, "http://"+srvIP+"/"); err != nil {
			t.Fatalf("%s on CRI-O: %v", p, err)
		}
	}
	var adds, checks, checkFails float64
	eventually(t, 30*time.Second, "the agent counted the CHECKs", func() error {
		adds = opCount(t, e, node, "ADD", "success") - addBefore
		checks = opCount(t, e, node, "CHECK", "success") - checkBefore
		checkFails = opCount(t, e, node, "CHECK", "failure") - checkFailBefore
		if checks < float64(len(pods)) {
			return fmt.Errorf("%v ADDs, %v successful CHECKs so far", adds, checks)
		}
		return nil
	})
	t.Logf("%s: %v ADDs, %v successful CHECKs, %v failed CHECKs for %d pods", node, adds, checks, checkFails, len(pods))
	writeFigure("crio-adds-checks", fmt.Sprintf("%v/%v", adds, checks))
	if checks < adds || checkFails > 0 {
		t.Errorf("want one successful CHECK per ADD: %v ADDs, %v CHECKs, %v failed", adds, checks, checkFails)
	}
	journal := crioJournal(t, node, since)
	for _, p := range pods {
		full := ns + "_" + p // ocicni's buildFullPodName: namespace_name
		ai := strings.Index(journal, "Adding pod "+full+" to CNI network")
		ci := strings.Index(journal, "Checking pod "+full+" for CNI network")
		if ai < 0 || ci < ai {
			t.Errorf("CRI-O's log does not show ADD then CHECK for %s (add at %d, check at %d)", full, ai, ci)
		}
	}
	// the plugin's own log: per pod, its ADD line and then a CHECK line for
	// the same sandbox
	lines := pluginLogSince(t, node, logN)
	for _, p := range pods {
		var seq []string
		for _, l := range grepLines(lines, `"pod":"`+ns+"/"+p+`"`) {
			switch {
			case strings.Contains(l, `"authbridge-cni ADD"`):
				seq = append(seq, "ADD")
			case strings.Contains(l, `"authbridge-cni CHECK"`):
				seq = append(seq, "CHECK")
			case strings.Contains(l, "failed"):
				seq = append(seq, "FAILED")
			}
		}
		if strings.Join(seq, ",") != "ADD,CHECK" {
			t.Errorf("plugin log for %s: %v, want [ADD CHECK]:\n%s", p, seq, strings.Join(lines, "\n"))
		}
		if p == "enforce-2" {
			for _, l := range grepLines(lines, `"pod":"`+ns+"/"+p+`"`) {
				t.Logf("plugin log: %s", l)
			}
		}
	}

	// A CHECK that fails: enforce-0's rules flushed, then CRI-O restarted
	// before the agent's next verify pass (30 s).
	netns := e.podNetns(t, node, ns, "enforce-0")
	logN = pluginLogLen(t, node)
	since = time.Now().Add(-time.Second)
	e.flushRules(t, node, netns)
	restartCRIO(t, node)
	var failed []string
	eventually(t, 30*time.Second, "CRI-O's restore CHECK of enforce-0 in the plugin log", func() error {
		failed = grepLines(pluginLogSince(t, node, logN), `"authbridge-cni CHECK failed"`, `"pod":"`+ns+`/enforce-0"`)
		if len(failed) == 0 {
			return fmt.Errorf("no failed CHECK for enforce-0 yet")
		}
		return nil
	})
	t.Logf("plugin log after CRI-O restart: %s", failed[0])
	if !strings.Contains(failed[0], "no longer match what ADD programmed") {
		t.Errorf("the failed CHECK does not say the rules drifted: %s", failed[0])
	}
	if others := grepLines(pluginLogSince(t, node, logN), `"authbridge-cni CHECK failed"`, `"pod":"`+ns+`/enforce-1"`); len(others) > 0 {
		t.Errorf("CHECK failed for enforce-1, whose rules were not touched: %s", others[0])
	}
	if w := grepLines(strings.Split(crioJournal(t, node, since), "\n"), "Could not restore sandbox IP"); len(w) > 0 {
		t.Logf("CRI-O on the failed CHECK: %s", w[0])
	}
	// what CRI-O now reports for the sandbox (it restores the IP only from
	// a passing CHECK)
	ip, _ := nodeExec(t, node, "sh", "-c", fmt.Sprintf(`crictl inspectp "$(crictl pods --namespace %s --name '^enforce-0$' -q | head -1)" | jq -c '[.status.state, .status.network.ip]'`, ns))
	t.Logf("CRI-O's sandbox status of enforce-0 after the failed restore CHECK [state, ip]: %s", strings.TrimSpace(ip))
	// the pod keeps running; the agent's drift pass re-applies the rules
	eventually(t, 75*time.Second, "enforce-0 redirected again (agent drift repair)", func() error {
		return e.redirectWorks(ns, "enforce-0", "http://"+srvIP+"/")
	})
}

// TestCRIOStatusAndGC: CRI-O asks STATUS only until it first succeeds after
// its start; a STATUS that would fail later is never seen (the node stays
// Ready), while a STATUS failing when CRI-O starts keeps the node's network
// NotReady until it passes. Our STATUS fails only when the state dir is not
// writable (status.go), so a read-only bind mount over it is the failure.
// GC: CRI-O's start calls it with the sandboxes it knows; our GC removes
// only the records of containers not among them.
func TestCRIOStatusAndGC(t *testing.T) {
	e := crioEnv(t)
	node := e.workers[1]
	ns := e.namespace(t, "e2e-crio-gc")
	e.createPod(t, ns, e.appPod("keep", "enforce-redirect", node, true))
	e.waitRunning(t, ns, "keep")
	const stateDir = "/var/run/authbridge"

	// 1. steady state: no STATUS calls from CRI-O at all
	before := opCount(t, e, node, "STATUS", "success") + opCount(t, e, node, "STATUS", "failure")
	time.Sleep(30 * time.Second)
	calls := opCount(t, e, node, "STATUS", "success") + opCount(t, e, node, "STATUS", "failure") - before
	t.Logf("%s: %v STATUS calls in 30 s (containerd 2.x: 6)", node, calls)
	writeFigure("crio-status-calls-per-30s", fmt.Sprint(calls))
	if calls != 0 {
		t.Errorf("CRI-O called STATUS %v times in 30 s of steady state; its source polls only until the first success", calls)
	}

	// 2. STATUS would fail (state dir read-only) while CRI-O runs: not asked,
	// node stays Ready.
	roOn := fmt.Sprintf("mount --bind %[1]s %[1]s && mount -o remount,bind,ro %[1]s", stateDir)
	roOff := "umount " + stateDir
	t.Cleanup(func() { // /var/run is /run on the node
		nodeExec(t, node, "sh", "-c", "while grep -q ' /run/authbridge [^ ]* ro' /proc/mounts; do umount "+stateDir+" || break; done")
	})
	if out, err := nodeExec(t, node, "sh", "-c", roOn); err != nil {
		t.Fatalf("read-only state dir: %v: %s", err, out)
	}
	logN := pluginLogLen(t, node)
	for i := 0; i < 5; i++ {
		time.Sleep(2 * time.Second)
		if ok, msg := networkReady(t, node); !ok {
			t.Errorf("NetworkReady false while CRI-O runs: %s", msg)
		}
	}
	if n := len(grepLines(pluginLogSince(t, node, logN), "STATUS")); n != 0 {
		t.Errorf("%d STATUS lines while CRI-O runs", n)
	}

	// 3. CRI-O restarted with STATUS failing: network NotReady, the Node
	// follows; fixed: ready again within CRI-O's 500 ms poll.
	restartCRIO(t, node)
	var msg string
	// (right after the restart CRI-O says "plugin status uninitialized"
	// until its first STATUS poll has answered)
	eventually(t, 30*time.Second, "NetworkReady false with our STATUS error on "+node, func() error {
		ok, m := networkReady(t, node)
		msg = m
		if ok || !strings.Contains(m, "authbridge-cni not ready") {
			return fmt.Errorf("NetworkReady: %s", m)
		}
		return nil
	})
	t.Logf("CRI-O restarted with STATUS failing: NetworkReady %s", msg)
	notReadySeen := false
	deadline := time.Now().Add(25 * time.Second)
	for time.Now().Before(deadline) && !notReadySeen {
		n, err := e.cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err == nil {
			if ok, m := nodeReady(n); !ok {
				notReadySeen = true
				t.Logf("Node %s Ready=false: %s", node, m)
			}
		}
		time.Sleep(time.Second)
	}
	if !notReadySeen {
		t.Logf("the Node's Ready did not turn false within 25 s (kubelet's runtime-status poll)")
	}
	statusFails := len(grepLines(pluginLogSince(t, node, logN), `"authbridge-cni STATUS failed"`))
	t.Logf("plugin log: %d failed STATUS lines while read-only", statusFails)
	if statusFails == 0 {
		t.Error("no failed STATUS in the plugin log after CRI-O's restart")
	}
	// a stale record for GC to find: a container CRI-O does not know
	fake := "0000000000000000000000000000000000000000000000000000000000c0ffee"
	fixed := time.Now()
	if out, err := nodeExec(t, node, "sh", "-c", roOff+" && cp "+stateDir+"/containers/$(ls "+stateDir+"/containers | head -1) "+stateDir+"/containers/"+fake+".json"); err != nil {
		t.Fatalf("state dir writable again + stale record: %v: %s", err, out)
	}
	eventually(t, 30*time.Second, "NetworkReady true again", func() error {
		if ok, m := networkReady(t, node); !ok {
			return fmt.Errorf("%s", m)
		}
		return nil
	})
	t.Logf("NetworkReady back %v after the state dir was writable again", time.Since(fixed).Round(100*time.Millisecond))
	e.waitNodeReady(t, node)

	// 4. GC: deferred at start until STATUS passed (cnimgr.pollFunc), so it
	// ran just now; a plain restart runs it again.
	var gc []string
	eventually(t, 30*time.Second, "GC in the plugin log", func() error {
		gc = grepLines(pluginLogSince(t, node, logN), "garbage-collected container states")
		if len(gc) == 0 {
			return fmt.Errorf("no GC removal logged yet")
		}
		return nil
	})
	t.Logf("plugin log: %s", gc[0])
	if !strings.Contains(gc[0], fake) {
		t.Errorf("GC did not remove the stale record %s: %s", fake, gc[0])
	}
	out, _ := nodeExec(t, node, "ls", stateDir+"/containers")
	if strings.Contains(out, fake) {
		t.Errorf("stale record still there: %s", out)
	}
	logN = pluginLogLen(t, node)
	restartCRIO(t, node)
	eventually(t, 30*time.Second, "GC on a plain CRI-O restart", func() error {
		if len(grepLines(pluginLogSince(t, node, logN), `"authbridge-cni GC"`)) == 0 {
			return fmt.Errorf("no GC line yet")
		}
		return nil
	})
	// the running pod's record survived both GCs and it is still redirected
	e.waitRunning(t, ns, "keep")
	if n := len(grepLines(pluginLogSince(t, node, 0), "garbage-collected", `"keep"`)); n > 0 {
		t.Errorf("GC removed a running pod's record")
	}
}

// TestCRIODel: deleting pods on a CRI-O worker runs our DEL for each
// sandbox (the record removed, logged once per sandbox at least).
func TestCRIODel(t *testing.T) {
	e := crioEnv(t)
	node := e.workers[0]
	ns := e.namespace(t, "e2e-crio-del")
	e.createPod(t, ns, e.appPod("gone", "enforce-redirect", node, true))
	e.waitRunning(t, ns, "gone")
	id, err := nodeExec(t, node, "sh", "-c", fmt.Sprintf(`crictl pods --namespace %s --name '^gone$' -q | head -1`, ns))
	id = strings.TrimSpace(id)
	if err != nil || id == "" {
		t.Fatalf("sandbox id: %v: %s", err, id)
	}
	if out, err := nodeExec(t, node, "test", "-f", "/var/run/authbridge/containers/"+id+".json"); err != nil {
		t.Fatalf("no record for sandbox %s: %s", id, out)
	}
	logN := pluginLogLen(t, node)
	if err := e.cs.CoreV1().Pods(ns).Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, time.Minute, "DEL of "+id, func() error {
		if _, err := nodeExec(t, node, "test", "-f", "/var/run/authbridge/containers/"+id+".json"); err == nil {
			return fmt.Errorf("record still there")
		}
		return nil
	})
	dels := grepLines(pluginLogSince(t, node, logN), `"authbridge-cni DEL"`, id)
	t.Logf("%d DEL lines for sandbox %s: %s", len(dels), id[:12], strings.Join(dels, " | "))
	if len(dels) == 0 {
		t.Error("no DEL in the plugin log")
	}
	if f := grepLines(pluginLogSince(t, node, logN), `"authbridge-cni DEL failed"`); len(f) > 0 {
		t.Errorf("DEL failed: %s", f[0])
	}
}

func (e *env) waitNodeReady(t *testing.T, node string) {
	t.Helper()
	eventually(t, 2*time.Minute, "node "+node+" Ready", func() error {
		n, err := e.cs.CoreV1().Nodes().Get(context.Background(), node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ok, m := nodeReady(n); !ok {
			return fmt.Errorf("%s", m)
		}
		return nil
	})
}
