package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/internal/enforce"
	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/podcondition"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// RepairInPlace gives a running pod that has no plugin record (its network
// was set up while the plugin was not in the chain) what the plugin's ADD
// would have: the same decision (podinfo.Decide on the pod, its namespace's
// config and the node state), and for enforce-redirect the same rules,
// backend choice, verification and record (enforce.Program), programmed
// from the host into the pod's netns found through procfs. The record is
// repair-<podUID>. Connections the pod opened before are not redirected
// (conntrack keeps their NAT decision); new ones are.
//
// It returns the mode the pod got and nil, or the error (nothing left
// behind: Program fails closed).
func (a *Agent) RepairInPlace(ctx context.Context, p *corev1.Pod) (podmode.Mode, error) {
	src := podinfo.NewClientSource(a.o.Client, "the agent's API server", podinfo.DefaultTimeout)
	pctx, cancel := context.WithTimeout(ctx, podinfo.DefaultBudget)
	defer cancel()
	nsCfg, err := src.GetNamespaceConfig(pctx, p.Namespace)
	if err != nil {
		return "", err
	}
	// The runtime handler decides whether rules in the pod's netns can
	// enforce at all (podinfo.Decide), as in the plugin's ADD.
	var handler string
	if rc := p.Spec.RuntimeClassName; rc != nil && *rc != "" {
		if handler, err = src.GetRuntimeClassHandler(pctx, *rc); err != nil {
			return "", err
		}
	}
	var state *nodestate.State
	st, stErr := nodestate.Read(a.StatePath())
	if stErr == nil {
		state = &st
	}
	dec, err := podinfo.Decide(p, nsCfg, a.cfg.Policy, state, handler)
	if err != nil {
		if errors.Is(err, podinfo.ErrNoNodeState) && stErr != nil {
			err = fmt.Errorf("%w: %v", err, stErr)
		}
		return "", err
	}
	rec := containerstate.Record{ContainerID: containerstate.RepairID(string(p.UID)), Namespace: p.Namespace, Pod: p.Name,
		PodUID: string(p.UID), Mode: dec.Mode, Reason: dec.Reason, AppliedAt: time.Now().UTC()}
	if dec.Mode != podmode.EnforceRedirect {
		return dec.Mode, containerstate.Write(a.cfg.StateDir, rec)
	}
	// Retries after a failure (every PodCheckInterval) keep RepairFailed
	// rather than flapping through Repairing, which would write the pod's
	// status twice per pass for nothing.
	if c := podcondition.Current(p); c == nil || c.Reason != podcondition.ReasonRepairFailed {
		a.setCondition(ctx, p, podcondition.NotEnforced(podcondition.ReasonRepairing,
			"the node agent is programming the egress redirect rules into the running pod"))
	}
	netns, err := a.o.NetNSFinder.Find(string(p.UID))
	if err != nil {
		return dec.Mode, fmt.Errorf("find the pod's network namespace: %w", err)
	}
	defer netns.Close()
	rec.Netns = hostNetnsPath(a.o.HostRoot, netns.Path())
	res, err := enforce.Program(enforce.Request{
		Pod: p, Policy: a.cfg.Policy, State: state, Backends: dec.Backends,
		AddrFamilies: podFamilies(p), NetNS: netns, NewBackend: a.o.NewBackend,
		StateDir: a.cfg.StateDir, Record: rec,
	})
	if err != nil {
		return dec.Mode, err
	}
	rec.Backend, rec.Spec = res.Backend, &res.Spec
	a.setVerified(ctx, p, rec)
	return dec.Mode, nil
}

// podFamilies are the families of the pod's addresses (the plugin reads
// them from the primary plugin's result; here it is long gone).
func podFamilies(p *corev1.Pod) []redirect.Family {
	ips := p.Status.PodIPs
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	var out []redirect.Family
	for _, ip := range ips {
		f := redirect.IPv4
		for _, c := range ip.IP {
			if c == ':' {
				f = redirect.IPv6
			}
		}
		out = append(out, f)
	}
	return out
}

// repairPod runs RepairInPlace for one pod without rules and reports it
// (Events, metrics, condition); it returns whether the pod now has a
// record. firstTime limits the failure Event to once per pod.
func (a *Agent) repairPod(ctx context.Context, p *corev1.Pod, firstTime bool) bool {
	ref := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: p.Namespace, Name: p.Name, UID: p.UID, ResourceVersion: p.ResourceVersion}
	mode, err := a.RepairInPlace(ctx, p)
	if err != nil {
		a.metrics.RulesRepairs.WithLabelValues("failure").Inc()
		a.log.Error("in-place repair failed: the pod has no egress redirect rules", "pod", p.Namespace+"/"+p.Name, "err", err)
		a.setCondition(ctx, p, podcondition.NotEnforced(podcondition.ReasonRepairFailed, "programming the rules in place failed: "+detail(err)))
		if firstTime {
			msg := "the node agent could not program the egress redirect rules into the running pod: " + detail(err)
			if a.cfg.RepairPods {
				msg += "; repairPods is on: a controller-owned pod is deleted so it is recreated with rules"
			} else {
				msg += "; delete the pod so it is recreated with rules (or enable repairPods)"
			}
			a.emit(ctx, ref, corev1.EventTypeWarning, ReasonRepairFailed, msg)
		}
		return false
	}
	a.metrics.RulesRepairs.WithLabelValues("success").Inc()
	a.UpdatePodsGauge()
	if mode != podmode.EnforceRedirect {
		a.log.Info("pod without a plugin record recorded in place", "pod", p.Namespace+"/"+p.Name, "mode", string(mode))
		a.kickVerify() // its Cooperative condition
		return true
	}
	rec, _ := containerstate.Read(a.cfg.StateDir, containerstate.RepairID(string(p.UID)))
	backend := "?"
	if rec != nil {
		backend = rec.Backend
	}
	a.log.Info("egress redirect rules programmed in place", "pod", p.Namespace+"/"+p.Name, "backend", backend)
	a.emit(ctx, ref, corev1.EventTypeNormal, ReasonRulesRepaired, fmt.Sprintf(
		"the node agent programmed and verified the egress redirect rules (backend %s) in the running pod's network namespace; new connections are redirected, connections opened before now are not (conntrack keeps them)", backend))
	return true
}
