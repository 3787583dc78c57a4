package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kagenti/authbridge-node/internal/enforce"
	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/internal/podnetns"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// Event reasons of the drift check and the in-place repair.
const (
	ReasonRulesDrifted  = "EgressRulesDrifted"
	ReasonRulesRepaired = "EgressRulesRepaired"
	ReasonRepairFailed  = "EgressRepairFailed"
)

// NetNSFinder opens a running pod's network namespace by its UID
// (podnetns.Finder in production).
type NetNSFinder interface {
	Find(podUID string) (ns.NetNS, error)
}

// maxEventDetail bounds what-differed in an Event message: a flushed
// dual-stack ruleset differs in every line.
const maxEventDetail = 800

// verifyLoop runs a full verify pass every VerifyInterval, and a pass over
// the pods whose condition is not yet True when kicked (a plugin ADD), so a
// new pod's condition turns True without waiting for the interval.
func (a *Agent) verifyLoop(ctx context.Context) {
	t := time.NewTicker(a.o.VerifyInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.VerifyPass(ctx, true)
		case <-a.verifyKick:
			a.VerifyPass(ctx, false)
		}
	}
}

// kickVerify asks for a pass over the pods not yet verified (coalesced).
func (a *Agent) kickVerify() {
	select {
	case a.verifyKick <- struct{}{}:
	default:
	}
}

// nodePods lists this node's pods by UID (listNodePods).
func (a *Agent) nodePods(ctx context.Context) (map[string]*corev1.Pod, error) {
	list, err := a.listNodePods(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*corev1.Pod, len(list))
	for i := range list {
		out[string(list[i].UID)] = &list[i]
	}
	return out, nil
}

// listNodePods returns this node's pods from the agent's informer cache
// once it has synced (no API request: these passes run on every node every
// verifyInterval and PodCheckInterval, and keep working through an API
// outage on the last state seen), else from the API server's watch cache.
func (a *Agent) listNodePods(ctx context.Context) ([]corev1.Pod, error) {
	if a.decisions != nil {
		if pods, ok := a.decisions.NodePods(); ok {
			return pods, nil
		}
	}
	list, err := a.o.Client.CoreV1().Pods(metav1.NamespaceAll).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", a.o.NodeName).String(),
		// Served from the API server's watch cache, not etcd.
		ResourceVersion: "0",
	})
	if err != nil {
		return nil, fmt.Errorf("list pods on node %s: %w", a.o.NodeName, err)
	}
	return list.Items, nil
}

// VerifyPass reads every enforce-redirect record's rules back from the
// kernel in its netns (Backend.Verify); a mismatch is drift: counted, an
// Event names the pod and what differed, the condition turns False
// (RulesDrifted), and the record's spec is re-applied with its backend and
// verified again (condition True again). Cooperative records get the
// Cooperative condition. In-place repair records of pods gone from the
// node are pruned. full=false only looks at pods whose condition is not
// yet True/Verified (new pods, after a plugin ADD).
func (a *Agent) VerifyPass(ctx context.Context, full bool) {
	start := time.Now()
	records, err := containerstate.ReadAll(a.cfg.StateDir)
	if err != nil {
		a.log.Warn("verify: cannot read the plugin's records", "err", err)
		return
	}
	pods, listErr := a.nodePods(ctx)
	if listErr != nil {
		// Rules are still verified and re-applied; conditions and
		// pruning wait for the API server.
		a.log.Warn("verify: cannot list this node's pods; checking rules without pod conditions", "err", listErr)
	}
	plugin := map[string]bool{} // pod UIDs with a record the plugin wrote
	for _, rec := range records {
		if !containerstate.IsRepair(rec.ContainerID) && rec.PodUID != "" {
			plugin[rec.PodUID] = true
		}
	}
	files := make([]string, 0, len(records))
	for f := range records {
		files = append(files, f)
	}
	sort.Strings(files)
	mismatched := 0
	for _, f := range files {
		rec := records[f]
		pod := pods[rec.PodUID]
		if containerstate.IsRepair(rec.ContainerID) && listErr == nil && (pod == nil || plugin[rec.PodUID]) {
			// The pod is gone, or a new sandbox of it got its own ADD.
			if err := containerstate.Remove(a.cfg.StateDir, rec.ContainerID); err != nil {
				a.log.Warn("cannot prune an in-place repair record", "record", rec.ContainerID, "err", err)
			}
			continue
		}
		if listErr == nil && pod == nil && rec.PodUID != "" {
			continue // the pod is gone; DEL or GC removes its record
		}
		if !full && (pod == nil || !needsVerify(pod, rec)) {
			continue
		}
		switch rec.Mode {
		case podmode.EnforceRedirect:
			if !a.verifyRecord(ctx, rec, pod) {
				mismatched++
			}
		case podmode.Cooperative:
			if pod != nil && podinfo.IsAuthBridgePod(pod, a.cfg.SidecarContainerNames) {
				a.setCondition(ctx, pod, podcondition.NotEnforced(podcondition.ReasonCooperative,
					fmt.Sprintf("cooperative egress (no redirect rules), reason %s: the sidecar sees only traffic the application sends to it", orUnknown(string(rec.Reason)))))
			}
		}
	}
	if full {
		a.mu.Lock()
		for id := range a.mismatch { // records gone with their pods
			if _, ok := records[id+".json"]; !ok {
				delete(a.mismatch, id)
			}
		}
		a.mu.Unlock()
		a.metrics.PodsRulesMismatched.Set(float64(mismatched))
		a.metrics.VerifyPassDuration.Observe(time.Since(start).Seconds())
	}
}

// needsVerify: a quick pass (after a plugin ADD) handles only pods that
// carry no condition yet, the new ones; a pod whose rules are broken waits
// for the full pass, so ADDs of other pods never repeat its Events.
func needsVerify(p *corev1.Pod, _ containerstate.Record) bool {
	return podcondition.Current(p) == nil
}

// openRecordNetns opens the netns a record's rules live in: for an
// in-place repair record the pod's current one (found again through
// procfs: the process whose path was recorded may have been restarted),
// else the path the runtime gave the plugin, as the host sees it.
func (a *Agent) openRecordNetns(rec containerstate.Record) (ns.NetNS, error) {
	if containerstate.IsRepair(rec.ContainerID) {
		return a.o.NetNSFinder.Find(rec.PodUID)
	}
	return podnetns.OpenHostPath(a.o.HostRoot, rec.Netns)
}

// verifyRecord verifies one enforce-redirect record and re-applies it on
// drift; it reports whether the rules match at the end. A netns that is
// gone (the sandbox was torn down meanwhile) is not drift.
func (a *Agent) verifyRecord(ctx context.Context, rec containerstate.Record, pod *corev1.Pod) bool {
	netns, err := a.openRecordNetns(rec)
	if err != nil {
		if errIsGone(err) {
			a.log.Debug("verify: the pod's netns is gone; skipping", "pod", rec.Namespace+"/"+rec.Pod, "netns", rec.Netns, "err", err)
			return true
		}
		// Not a teardown: the rules cannot be checked, so they do not count
		// as matching.
		a.log.Warn("verify: cannot open the pod's netns", "pod", rec.Namespace+"/"+rec.Pod, "netns", rec.Netns, "err", err)
		return false
	}
	defer netns.Close()
	verr := enforce.Verify(netns, a.o.NewBackend, rec)
	if verr == nil {
		a.setMismatch(rec.ContainerID, false)
		if pod != nil {
			a.setVerified(ctx, pod, rec)
		}
		return true
	}
	if a.mismatchKnown(rec.ContainerID) {
		// Re-applying failed before: try again, but the Event, the counter
		// and the condition already say so (the gauge keeps counting it).
		if rerr := enforce.Reapply(netns, a.o.NewBackend, rec); rerr != nil {
			a.log.Debug("re-applying drifted rules failed again", "pod", rec.Namespace+"/"+rec.Pod, "err", rerr)
			return false
		}
		a.setMismatch(rec.ContainerID, false)
		a.log.Info("drifted rules re-applied after earlier failures", "pod", rec.Namespace+"/"+rec.Pod, "backend", rec.Backend)
		if pod != nil {
			a.setVerified(ctx, pod, rec)
		}
		return true
	}
	// A DEL removes the rules before the record: a record gone now means
	// teardown, not drift.
	if cur, err := containerstate.Read(a.cfg.StateDir, rec.ContainerID); err == nil && cur == nil {
		return true
	}
	what := detail(verr)
	a.metrics.RulesDrift.WithLabelValues(oneOfBackend(rec.Backend)).Inc()
	a.log.Warn("egress redirect rules drifted from what was programmed; re-applying", "pod", rec.Namespace+"/"+rec.Pod, "backend", rec.Backend, "err", verr)
	if pod != nil {
		a.setCondition(ctx, pod, podcondition.NotEnforced(podcondition.ReasonRulesDrifted,
			fmt.Sprintf("the %s redirect rules no longer matched what was programmed; re-applying: %s", rec.Backend, what)))
	}
	rerr := enforce.Reapply(netns, a.o.NewBackend, rec)
	msg := fmt.Sprintf("egress redirect rules (backend %s) no longer matched what was programmed: %s; ", rec.Backend, what)
	if rerr != nil {
		msg += "re-applying them FAILED, egress is not enforced: " + detail(rerr)
	} else {
		msg += fmt.Sprintf("re-applied and verified (found within verifyInterval %s)", a.o.VerifyInterval)
	}
	a.emit(ctx, podRef(rec, pod), corev1.EventTypeWarning, ReasonRulesDrifted, msg)
	if rerr != nil {
		a.setMismatch(rec.ContainerID, true)
		a.log.Error("re-applying drifted rules failed: the pod's egress is not enforced", "pod", rec.Namespace+"/"+rec.Pod, "backend", rec.Backend, "err", rerr)
		if pod != nil {
			a.setCondition(ctx, pod, podcondition.NotEnforced(podcondition.ReasonRulesDrifted,
				"the redirect rules drifted and re-applying them failed: "+detail(rerr)))
		}
		return false
	}
	if pod != nil {
		a.setVerified(ctx, pod, rec)
	}
	return true
}

// setVerified sets True/Verified and, the first time a pod turns True
// (not after drift), observes the time from its sandbox's network to now.
func (a *Agent) setVerified(ctx context.Context, pod *corev1.Pod, rec containerstate.Record) {
	var fams []string
	if rec.Spec != nil {
		for _, f := range rec.Spec.Families {
			fams = append(fams, string(f))
		}
	}
	prev := podcondition.Current(pod)
	first := prev == nil || (prev.Status != corev1.ConditionTrue && prev.Reason != podcondition.ReasonRulesDrifted && prev.Reason != podcondition.ReasonCooperative)
	if a.setCondition(ctx, pod, podcondition.Verified(rec.Backend, fams)) && first {
		if d := time.Since(sandboxCreated(pod)); d >= 0 {
			a.metrics.PodEnforcedSeconds.Observe(d.Seconds())
		}
	}
}

// setCondition writes the pod's egress-enforced condition on a transition
// and updates the local copy (several transitions can happen in one pass);
// it reports whether it wrote. A failure is logged: the rules, not the
// condition, are what enforces.
func (a *Agent) setCondition(ctx context.Context, pod *corev1.Pod, s podcondition.State) bool {
	now := time.Now()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wrote, err := podcondition.Set(cctx, a.o.Client, pod, s, now)
	if err != nil {
		a.log.Warn("cannot set the pod's egress-enforced condition", "pod", pod.Namespace+"/"+pod.Name, "reason", s.Reason, "err", err)
		return false
	}
	if wrote {
		c := corev1.PodCondition{Type: podcondition.Type, Status: s.Status, Reason: s.Reason, Message: s.Message,
			LastTransitionTime: metav1.NewTime(now.UTC().Truncate(time.Second))}
		if cur := podcondition.Current(pod); cur != nil {
			if cur.Status == s.Status {
				c.LastTransitionTime = cur.LastTransitionTime
			}
			*cur = c
		} else {
			pod.Status.Conditions = append(pod.Status.Conditions, c)
		}
	}
	return wrote
}

// setMismatch remembers which records' drift could not be re-applied.
func (a *Agent) setMismatch(id string, failed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if failed {
		a.mismatch[id] = true
	} else {
		delete(a.mismatch, id)
	}
}

func (a *Agent) mismatchKnown(id string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.mismatch[id]
}

func podRef(rec containerstate.Record, pod *corev1.Pod) corev1.ObjectReference {
	if pod != nil {
		return corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID, ResourceVersion: pod.ResourceVersion}
	}
	return corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: rec.Namespace, Name: rec.Pod}
}

// detail is an error as one bounded line for an Event or condition.
func detail(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > maxEventDetail {
		s = s[:maxEventDetail] + " ..."
	}
	return s
}

// oneOfBackend keeps the drift counter's label to the known backends.
func oneOfBackend(b string) string {
	for _, k := range []string{"nftables", "iptables-nft", "iptables-legacy"} {
		if b == k {
			return b
		}
	}
	return "other"
}

// hostNetnsPath turns a netns path in the agent's view of the host's procfs
// back into the host's own (recorded for operators and DEL).
func hostNetnsPath(hostRoot, p string) string {
	if hostRoot == "" || hostRoot == "/" {
		return p
	}
	if rel, err := filepath.Rel(hostRoot, p); err == nil && !strings.HasPrefix(rel, "..") {
		return "/" + rel
	}
	return p
}

// errIsGone reports a pod netns that no longer exists.
func errIsGone(err error) bool {
	var gone ns.NSPathNotExistErr
	return errors.Is(err, podnetns.ErrNotFound) || errors.As(err, &gone) || errors.Is(err, os.ErrNotExist)
}
