package agent

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// emit creates a core/v1 Event directly (no broadcaster: one API call per
// event, and RBAC needs only events create). Failures are logged: an Event
// is a report, never a reason to fail.
func (a *Agent) emit(ctx context.Context, ref corev1.ObjectReference, typ, reason, msg string) {
	ns := ref.Namespace
	if ns == "" {
		ns = metav1.NamespaceDefault // cluster-scoped objects' events live in default
	}
	now := metav1.NewTime(time.Now())
	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: ref.Name + ".", Namespace: ns},
		InvolvedObject: ref,
		Reason:         reason,
		Message:        msg,
		Type:           typ,
		Source:         corev1.EventSource{Component: EventComponent, Host: a.o.NodeName},
		FirstTimestamp: now,
		LastTimestamp:  now,
		Count:          1,
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := a.o.Client.CoreV1().Events(ns).Create(cctx, ev, metav1.CreateOptions{}); err != nil {
		a.log.Warn("cannot create event", "reason", reason, "object", ref.Kind+"/"+ref.Namespace+"/"+ref.Name, "err", err)
	}
}

// HandlePluginEvent records one plugin event in the metrics and queues the
// Kubernetes Events it deserves (the API calls run on another goroutine so
// a slow API server never blocks the socket).
func (a *Agent) HandlePluginEvent(ev pluginevents.Event) {
	a.metrics.ObservePluginEvent(ev)
	if ev.Op == pluginevents.OpAdd || ev.Op == pluginevents.OpDel || ev.Op == pluginevents.OpGC {
		a.UpdatePodsGauge()
	}
	if ev.Op != pluginevents.OpAdd || ev.Namespace == "" || ev.Pod == "" {
		return
	}
	if ev.Result == pluginevents.Success && (ev.Mode == podmode.EnforceRedirect.Label() || ev.Mode == podmode.Cooperative.Label()) {
		a.kickVerify() // the new pod's egress-enforced condition
	}
	switch {
	case ev.Result == pluginevents.Success && ev.Mode == podmode.Cooperative.Label():
		typ := corev1.EventTypeNormal
		if ev.Reason.Warns() {
			typ = corev1.EventTypeWarning
		}
		msg := fmt.Sprintf("egress mode cooperative (no redirect), reason %s: the AuthBridge sidecar sees only traffic the application sends to it; see %s", orUnknown(string(ev.Reason)), config.SecurityModelDoc)
		if ev.Message != "" {
			msg += ": " + ev.Message
		}
		a.queuePodEvent(ev.Namespace, ev.Pod, typ, ReasonCooperativeEgress, msg)
	case ev.Result == pluginevents.Failure && (ev.Mode == podmode.EnforceRedirect.Label() || ev.Mode == ""):
		msg := "egress enforcement (enforce-redirect) could not be set up; the pod's sandbox was not started"
		if ev.Backend != "" {
			msg += " (backend " + ev.Backend + ")"
		}
		if ev.Message != "" {
			msg += ": " + ev.Message
		}
		a.queuePodEvent(ev.Namespace, ev.Pod, corev1.EventTypeWarning, ReasonEnforcementFailed, msg)
	}
}

func (a *Agent) queuePodEvent(ns, name, typ, reason, msg string) {
	work := func(ctx context.Context) {
		ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: name}
		// kubectl describe matches events by the pod's UID: look it up.
		gctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		pod, err := a.o.Client.CoreV1().Pods(ns).Get(gctx, name, metav1.GetOptions{})
		cancel()
		switch {
		case err == nil:
			ref.UID, ref.ResourceVersion = pod.UID, pod.ResourceVersion
		case apierrors.IsNotFound(err):
		default:
			a.log.Debug("pod lookup for event failed", "pod", ns+"/"+name, "err", err)
		}
		a.emit(ctx, ref, typ, reason, msg)
	}
	select {
	case a.apiWork <- work:
	default:
		a.log.Warn("event queue full, dropping pod event", "pod", ns+"/"+name, "reason", reason)
	}
}

func (a *Agent) apiWorker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case w := <-a.apiWork:
			w(ctx)
		}
	}
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
