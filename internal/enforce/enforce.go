// Package enforce is the one code path that programs a pod's egress
// redirect rules: the CNI plugin's ADD and the node agent's in-place repair
// both call Program, and the agent's drift check calls Verify and Reapply.
// So a pod repaired by the agent gets exactly the rules, backend choice and
// record an ADD would have given it, and DEL, CHECK and GC treat both alike.
//
// The caller decides the mode (podinfo.Decide) and opens the pod's network
// namespace; Program derives the families and the spec, applies and
// verifies them with the first working backend, and writes the record;
// any failure leaves no rules and no record behind (fail closed).
package enforce

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// NewBackendFunc returns a redirect backend by name (redirect.New).
type NewBackendFunc func(name string) (redirect.Backend, error)

// Request is everything Program needs for one pod.
type Request struct {
	Pod    *corev1.Pod
	Policy config.Policy
	// State is the node state (nil when unreadable: resolvers fall back to
	// the policy's clusterDNS).
	State *nodestate.State
	// Backends are the working backends in preference order
	// (podinfo.Decision.Backends).
	Backends []string
	// AddrFamilies are the families of the pod's addresses (from the
	// primary plugin's result, or the pod's status.podIPs).
	AddrFamilies []redirect.Family
	// NetNS is the pod's network namespace, already open.
	NetNS      ns.NetNS
	NewBackend NewBackendFunc
	// StateDir and Record: where and what to record; Program fills in
	// Backend and Spec.
	StateDir string
	Record   containerstate.Record
}

// Result is what Program did.
type Result struct {
	Backend string
	Spec    redirect.Spec
	// Attempts are the backends that failed before the chosen one, with why.
	Attempts []string
}

// InvalidSpecError is a spec the backends cannot render (a policy error):
// the plugin reports it as an invalid network config.
type InvalidSpecError struct{ Err error }

func (e *InvalidSpecError) Error() string { return e.Err.Error() }
func (e *InvalidSpecError) Unwrap() error { return e.Err }

// ErrNotProgrammed wraps every failure to program the rules (every backend
// failed, or the netns could not be entered).
var ErrNotProgrammed = errors.New("redirect rules could not be programmed")

// Program derives the pod's spec, applies and verifies it with the first
// working backend in its netns, and writes the record. On any error nothing
// is left behind: no rules (the failed backends' leftovers are removed) and
// no record.
func Program(r Request) (Result, error) {
	var res Result
	name := r.Pod.Namespace + "/" + r.Pod.Name
	families, onLink, err := Facts(r.NetNS, r.AddrFamilies)
	if err != nil {
		return res, fmt.Errorf("pod %s: %w", name, err)
	}
	spec, err := BuildSpec(r.Pod, r.Policy, r.State, families, onLink)
	if err != nil {
		return res, err
	}
	backend, attempts, err := Apply(r.NetNS, r.NewBackend, r.Backends, spec)
	res.Attempts = attempts
	if err != nil {
		return res, err
	}
	res.Backend, res.Spec = backend.Name(), spec
	rec := r.Record
	rec.Backend, rec.Spec = backend.Name(), &spec
	if err := containerstate.Write(r.StateDir, rec); err != nil {
		// Without the record DEL, CHECK and the drift check would not know
		// the rules: undo.
		if rerr := r.NetNS.Do(func(ns.NetNS) error { return backend.Remove() }); rerr != nil {
			err = fmt.Errorf("%w (and removing the rules failed: %v)", err, rerr)
		}
		return res, err
	}
	return res, nil
}

// BuildSpec renders the policy's knobs, the pod's resolvers (from its
// dnsPolicy), the families and the netns's on-link IPv6 prefixes into the
// pod's rules, validated.
func BuildSpec(pod *corev1.Pod, policy config.Policy, state *nodestate.State, families []redirect.Family, onLinkIPv6 []netip.Prefix) (redirect.Spec, error) {
	resolvers, err := podinfo.Resolvers(pod, policy, state)
	if err != nil {
		return redirect.Spec{}, err
	}
	spec := policy.RedirectSpec(families...)
	spec.Resolvers = resolvers
	spec.OnLinkIPv6 = onLinkIPv6
	if err := spec.Validate(); err != nil {
		return redirect.Spec{}, &InvalidSpecError{fmt.Errorf("rules for pod %s/%s: %w", pod.Namespace, pod.Name, err)}
	}
	return spec, nil
}

// Facts reads what the rules need from the pod's netns: the families to
// program and the on-link IPv6 prefixes (redirect.OnLinkIPv6). IPv6 is
// programmed whenever the kernel has it, whatever the netns's IPv6 switch
// says now and whatever the pod's addresses are: a v4-only pod still has
// link-local IPv6, and a pod whose IPv6 is off at ADD can have it switched
// on later (a sysctl, an interface re-enabled), when rules decided at ADD
// could no longer be added. IPv4 alone only on a kernel without IPv6.
func Facts(netns ns.NetNS, fromAddrs []redirect.Family) ([]redirect.Family, []netip.Prefix, error) {
	var v6 bool
	var onLink []netip.Prefix
	err := netns.Do(func(ns.NetNS) error {
		var err error
		if v6, err = redirect.KernelHasIPv6(); err != nil || !v6 {
			return err
		}
		onLink, err = redirect.OnLinkIPv6()
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read IPv6 support and on-link routes in network namespace %s: %w", netns.Path(), err)
	}
	for _, f := range fromAddrs {
		if f == redirect.IPv6 && !v6 {
			return nil, nil, errors.New("the pod has IPv6 addresses but the kernel has no IPv6 in its network namespace")
		}
	}
	if v6 {
		return []redirect.Family{redirect.IPv4, redirect.IPv6}, onLink, nil
	}
	return []redirect.Family{redirect.IPv4}, nil, nil
}

// Apply enters the netns and programs the spec with the first backend whose
// Apply and Verify succeed; a failed backend's leftovers are removed before
// the next one is tried. Errors wrap ErrNotProgrammed.
func Apply(netns ns.NetNS, newBackend NewBackendFunc, backends []string, spec redirect.Spec) (redirect.Backend, []string, error) {
	var chosen redirect.Backend
	var attempts []string
	err := netns.Do(func(ns.NetNS) error {
		for _, name := range backends {
			b, err := newBackend(name)
			if err == nil {
				err = b.Apply(spec)
				if err == nil {
					err = b.Verify(spec)
				}
				if err != nil {
					if rerr := b.Remove(); rerr != nil {
						err = fmt.Errorf("%w (cleanup: %v)", err, rerr)
					}
				}
			}
			if err == nil {
				chosen = b
				return nil
			}
			attempts = append(attempts, name+": "+err.Error())
		}
		return nil
	})
	if err != nil {
		return nil, attempts, fmt.Errorf("%w: enter network namespace %s: %w", ErrNotProgrammed, netns.Path(), err)
	}
	if chosen == nil {
		if len(backends) == 0 {
			return nil, attempts, fmt.Errorf("%w: no working backend on this node; check the node agent's probe results", ErrNotProgrammed)
		}
		return nil, attempts, fmt.Errorf("%w: every working backend failed in the pod's netns (%s); check the node's kernel modules and the backend binaries, and the node agent's probe results", ErrNotProgrammed, strings.Join(attempts, "; "))
	}
	return chosen, attempts, nil
}

// Verify reads the record's rules back from the kernel in netns and fails
// unless they equal its spec exactly (redirect.Backend.Verify).
func Verify(netns ns.NetNS, newBackend NewBackendFunc, rec containerstate.Record) error {
	b, err := recordBackend(newBackend, rec)
	if err != nil {
		return err
	}
	return netns.Do(func(ns.NetNS) error { return b.Verify(*rec.Spec) })
}

// Reapply programs the record's spec again with the record's backend (the
// same rules, never another backend: the record names it) and verifies it.
// Apply replaces the backend's own chains and table wholesale, so whatever
// drifted in them (a flushed table, a moved jump, an extra rule) is gone.
func Reapply(netns ns.NetNS, newBackend NewBackendFunc, rec containerstate.Record) error {
	b, err := recordBackend(newBackend, rec)
	if err != nil {
		return err
	}
	return netns.Do(func(ns.NetNS) error {
		if err := b.Apply(*rec.Spec); err != nil {
			return fmt.Errorf("re-apply %s rules: %w", b.Name(), err)
		}
		if err := b.Verify(*rec.Spec); err != nil {
			return fmt.Errorf("verify re-applied %s rules: %w", b.Name(), err)
		}
		return nil
	})
}

func recordBackend(newBackend NewBackendFunc, rec containerstate.Record) (redirect.Backend, error) {
	if rec.Spec == nil || rec.Backend == "" {
		return nil, fmt.Errorf("record %s of pod %s/%s is incomplete (no backend or spec)", rec.ContainerID, rec.Namespace, rec.Pod)
	}
	return newBackend(rec.Backend)
}
