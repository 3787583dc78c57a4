// Package cni is the authbridge-cni chained CNI plugin: it runs after the
// primary plugin (bridge, Calico, ...) in the conflist, returns the primary's
// prevResult unchanged, and programs the AuthBridge egress redirect rules in
// the pod's network namespace, replacing the privileged proxy-init container.
//
// It also runs as a Multus attachment (the NetworkAttachmentDefinition
// authbridge-cni, cniInstallMode multus-attachment): Multus runs it after
// the cluster network with no prevResult; the pod's families then come from
// its netns (enforce.AddrFamilies, fail closed when it has no address), the
// result is empty, and the config's entryFile names the node agent's file
// holding the rest of the entry (expandEntryFile).
//
// Plugin config: the conflist entry the node agent writes (Conf): the CNI
// keys, "kubeconfig", "logFile" (default /var/log/authbridge-cni.log),
// "stateDir" (default /var/run/authbridge) and the policy fields of
// pkg/config inline. Parsing is strict: unknown fields are errors.
//
// ADD: a container without K8S_POD_NAMESPACE/K8S_POD_NAME in CNI_ARGS is not
// a Kubernetes pod and passes through untouched, and so does a pod of
// excludeNamespaces (no API request, no agent). Otherwise the pod and its
// namespace's ConfigMap come from the node agent over the decision socket
// (its informer cache, lookup.go), or, when the agent does not answer,
// from the API server with the plugin's own Node-bound credential
// (transient errors retried within a bounded budget; an unreachable server
// fails the ADD, never a silent "none"), and podinfo.Decide picks the mode. enforce-redirect reads the node state the
// agent wrote (stateDir/node-state.json), takes the working backends in the
// policy's order, programs IPv4 and, whenever the kernel has IPv6, IPv6 too
// (whatever prevResult's IPs and the netns's IPv6 switch are: a v4-only pod
// still has an fe80:: link-local address, and IPv6 can be switched on
// after ADD), derives the resolvers from the pod's
// dnsPolicy (a pod-named nameserver must be allowed by the admin), enters
// the netns and applies then verifies the rules with the first backend that
// works (trying the next on failure). Any failure removes what was applied
// and fails the ADD: the pod gets no network without enforcement (fail
// closed). What was applied is recorded in stateDir/containers/<containerID>.json.
//
// CHECK verifies the recorded rules in the netns (fails when flushed or
// changed). DEL removes the rules (best effort, the netns may be gone) and
// the record (and the node agent's in-place repair record of the pod,
// repair-<K8S_POD_UID>); it never needs the API server. DEL and GC parse the config
// leniently (ParseConfigLenient: unknown keys and invalid policy values are
// logged at WARN, not errors) so a conflist entry written by a newer or older
// agent never leaves pods stuck Terminating; malformed JSON is still an
// error (the runtime retries). STATUS fails with code 50
// (ErrPluginNotAvailable) only when the plugin itself cannot work (the
// state dir is unusable); a missing node state or no working backend is
// not a STATUS failure (a NotReady node evicts every pod). GC removes
// records of containers not in cni.dev/valid-attachments (never the agent's
// repair records: the runtime does not know their IDs). ADD's programming
// (enforce.Program) and CHECK's verification are the code the node agent's
// in-place repair and drift check run too (internal/enforce).
//
// Each invocation logs one JSON line to logFile and sends a
// pluginevents.Event to stateDir/plugin-events.sock (best effort).
package cni

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"
	"github.com/containernetworking/plugins/pkg/ns"
	"gopkg.in/natefinch/lumberjack.v2"
	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/internal/enforce"
	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/pkg/containerstate"
	"github.com/kagenti/authbridge-node/pkg/decision"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
	"github.com/kagenti/authbridge-node/pkg/podmode"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// DefaultDecisionBudget bounds how long one ADD spends getting the pod and
// its namespace config (agent answer, then API reads with retries).
const DefaultDecisionBudget = 12 * time.Second

// SupportedVersions are the CNI spec versions the plugin speaks.
var SupportedVersions = []string{"0.4.0", "1.0.0", "1.1.0"}

// Plugin carries the plugin's dependencies; Default() wires the real ones.
type Plugin struct {
	// NewSource builds the API reader from the config.
	NewSource func(*Conf) (podinfo.Source, error)
	// NewBackend returns a redirect backend by name.
	NewBackend func(name string) (redirect.Backend, error)
	// APITimeout bounds the decision inputs of one ADD: the agent's answer
	// and, when it does not answer, all API reads with their retries.
	APITimeout time.Duration
	// QueryAgent asks the node agent (decision.Query); nil goes straight
	// to the API.
	QueryAgent func(ctx context.Context, socketPath string, req decision.Request) (decision.Response, error)
	// AgentTimeout bounds QueryAgent (default DefaultAgentTimeout).
	AgentTimeout time.Duration
}

// Default returns the plugin with client-go and the real backends.
func Default() *Plugin {
	return &Plugin{
		NewSource: func(c *Conf) (podinfo.Source, error) {
			if c.Kubeconfig == "" {
				return nil, types.NewError(types.ErrInvalidNetworkConfig, "authbridge-cni config field kubeconfig: not set", "the node agent writes the kubeconfig path into the conflist entry; reinstall the entry by restarting the agent")
			}
			return podinfo.NewKubeSource(c.Kubeconfig, podinfo.DefaultTimeout)
		},
		NewBackend: redirect.New,
		APITimeout: DefaultDecisionBudget,
		QueryAgent: decision.Query,
	}
}

// Funcs returns the skel callbacks.
func (p *Plugin) Funcs() skel.CNIFuncs {
	return skel.CNIFuncs{Add: p.Add, Del: p.Del, Check: p.Check, Status: p.Status, GC: p.GC}
}

// VersionInfo is the plugin's supported spec versions.
func VersionInfo() version.PluginInfo { return version.PluginSupports(SupportedVersions...) }

// record is one invocation's outcome, logged and sent as an event.
type record struct {
	op                        pluginevents.Op
	namespace, pod, container string
	mode                      podmode.Mode
	reason                    podmode.Reason
	backend                   string
	attempts                  []string
	start                     time.Time
	err                       error
}

func (p *Plugin) finish(conf *Conf, log *slog.Logger, r *record) {
	d := time.Since(r.start)
	attrs := []any{
		"op", string(r.op), "container", r.container, "duration", d.String(), "seconds", d.Seconds(),
	}
	if r.pod != "" {
		attrs = append(attrs, "pod", r.namespace+"/"+r.pod)
	}
	for _, kv := range [][2]string{{"mode", string(r.mode)}, {"reason", string(r.reason)}, {"backend", r.backend}} {
		if kv[1] != "" {
			attrs = append(attrs, kv[0], kv[1])
		}
	}
	if len(r.attempts) > 0 {
		attrs = append(attrs, "failedBackends", r.attempts)
	}
	ev := pluginevents.Event{Op: r.op, Result: pluginevents.Success, Reason: r.reason, Backend: r.backend,
		Namespace: r.namespace, Pod: r.pod, Seconds: d.Seconds()}
	if r.mode != "" {
		ev.Mode = r.mode.Label()
	}
	if r.err != nil {
		ev.Result = pluginevents.Failure
		ev.Message = r.err.Error()
		log.Error("authbridge-cni "+string(r.op)+" failed", append(attrs, "err", r.err.Error())...)
	} else if r.op == pluginevents.OpStatus {
		// containerd 2.x calls STATUS every 5 s: a line per success would
		// fill the log with nothing. CHECK is logged like ADD: CRI-O calls
		// it once right after each ADD and once per sandbox when it
		// restarts (containerd never does), and that line is how an
		// operator sees the runtime verified a pod's rules.
		log.Debug("authbridge-cni "+string(r.op), attrs...)
	} else {
		log.Info("authbridge-cni "+string(r.op), attrs...)
	}
	if conf != nil {
		sock := filepath.Join(conf.StateDir, pluginevents.SocketName)
		if err := pluginevents.Send(sock, ev); err != nil {
			// The agent may be restarting; metrics never fail a pod.
			log.Debug("plugin event not delivered", "err", err.Error())
		}
	}
}

// The plugin's log file is bounded: at logMaxMB it is rotated (renamed
// with a timestamp next to it), and at most logBackups rotated files are
// kept, so the plugin never uses more than (1+logBackups)*logMaxMB of the
// node's disk for its log (40 MB).
const (
	logMaxMB   = 10
	logBackups = 3
)

// logWriter appends to path, rotating it at maxMB megabytes and keeping
// backups old files. Each plugin run is its own process: the size is
// checked on open and on every write.
func logWriter(path string, maxMB, backups int) io.WriteCloser {
	return &lumberjack.Logger{Filename: path, MaxSize: maxMB, MaxBackups: backups, LocalTime: false}
}

// openLog opens the config's log file; stderr when it cannot be opened
// (stdout carries the CNI result).
func openLog(conf *Conf) (*slog.Logger, func()) {
	var w io.Writer = os.Stderr
	closeFn := func() {}
	if conf != nil && conf.LogFile != "" {
		if err := os.MkdirAll(filepath.Dir(conf.LogFile), 0o755); err == nil {
			// Open (create) it here with the plugin's mode, so a failure
			// falls back to stderr as before; the rotating writer appends.
			if f, err := os.OpenFile(conf.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err == nil {
				f.Close()
				lw := logWriter(conf.LogFile, logMaxMB, logBackups)
				w, closeFn = lw, func() { lw.Close() }
			}
		}
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo})), closeFn
}

// begin parses the config and opens the log for one invocation.
func begin(op pluginevents.Op, args *skel.CmdArgs) (*Conf, *slog.Logger, func(), *record, error) {
	r := &record{op: op, container: args.ContainerID, start: time.Now()}
	var conf *Conf
	var warn, err error
	if op == pluginevents.OpDel || op == pluginevents.OpGC {
		// Teardown must not depend on the entry matching this binary.
		conf, warn, err = ParseConfigLenient(args.StdinData)
	} else {
		conf, err = ParseConfig(args.StdinData)
	}
	log, closeLog := openLog(conf)
	if err != nil {
		r.err = err
		log.Error("authbridge-cni "+string(op)+" failed", "op", string(op), "container", args.ContainerID, "err", err.Error())
		return nil, log, closeLog, r, err
	}
	if warn != nil {
		log.Warn("authbridge-cni "+string(op)+": the config would be refused by ADD; tearing down anyway", "op", string(op), "container", args.ContainerID, "err", warn.Error())
	}
	return conf, log, closeLog, r, nil
}

// Add implements CNI ADD: check the chain, decide the pod's mode, then
// enforce it (only enforce-redirect touches the netns), then record it.
func (p *Plugin) Add(args *skel.CmdArgs) (err error) {
	conf, log, closeLog, r, err := begin(pluginevents.OpAdd, args)
	defer closeLog()
	if err != nil {
		return err
	}
	defer func() { r.err = err; p.finish(conf, log, r) }()

	if err := parsePrevResult(conf); err != nil {
		return err
	}
	passThrough := func() error { return printResult(conf) }
	k8s, err := ParseK8sArgs(args.Args)
	if err != nil {
		return err
	}
	if !k8s.IsPod() {
		r.mode, r.reason = podmode.Skip, podmode.ReasonNotAPod
		return passThrough()
	}
	r.namespace, r.pod = string(k8s.K8S_POD_NAMESPACE), string(k8s.K8S_POD_NAME)
	if conf.Policy.IsExcludedNamespace(r.namespace) {
		// No API request, no agent round trip, no node state: the node's
		// own infrastructure starts whatever else is down.
		r.mode, r.reason = podmode.Skip, podmode.ReasonExcludedNamespace
		return passThrough()
	}

	dec, err := p.decide(args, conf, log, k8s, r)
	if err != nil {
		return err
	}
	r.mode, r.reason = dec.Mode, dec.Reason
	cs := containerstate.Record{ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns,
		Namespace: r.namespace, Pod: r.pod, PodUID: string(dec.pod.UID), Mode: dec.Mode, Reason: dec.Reason, AppliedAt: time.Now().UTC()}
	if dec.Mode != podmode.EnforceRedirect {
		if err := containerstate.Write(conf.StateDir, cs); err != nil {
			return err
		}
		return passThrough()
	}
	if err := p.enforce(args, conf, dec, r, &cs); err != nil {
		return err
	}
	return passThrough()
}

// parsePrevResult parses the previous plugin's result when there is one.
// There is none when the plugin runs as a Multus attachment (the delegate of
// the NetworkAttachmentDefinition authbridge-cni, after the cluster
// network): it then finds the pod's families in the netns (familiesInNetns).
func parsePrevResult(conf *Conf) error {
	if conf.RawPrevResult == nil {
		return nil
	}
	if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
		return types.NewError(types.ErrDecodingFailure, "authbridge-cni: cannot parse prevResult: "+err.Error(), "the previous plugin in the chain returned a malformed result")
	}
	return nil
}

// printResult passes the previous plugin's result on unchanged; as an
// attachment (no prevResult) it returns an empty result: the plugin adds no
// interface and no address, and Multus records no network status for an
// empty result (nadutils.CreateNetworkStatuses) while keeping the cluster
// network's as the pod's.
func printResult(conf *Conf) error {
	if conf.PrevResult == nil {
		return types.PrintResult(&current.Result{CNIVersion: current.ImplementedSpecVersion}, conf.CNIVersion)
	}
	return types.PrintResult(conf.PrevResult, conf.CNIVersion)
}

// podDecision is what ADD decided for a pod, with what enforcing it needs.
type podDecision struct {
	podinfo.Decision
	pod   *corev1.Pod
	state *nodestate.State // nil when the node state is unreadable
}

// decide reads the pod, its namespace's config and the node state, and
// picks the mode (podinfo.Decide). Nothing in the netns is touched.
func (p *Plugin) decide(args *skel.CmdArgs, conf *Conf, log *slog.Logger, k8s K8sArgs, r *record) (podDecision, error) {
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return podDecision{}, types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("authbridge-cni: network namespace %q of pod %s/%s: %v", args.Netns, r.namespace, r.pod, err), "the runtime passed a netns that does not exist (CNI_NETNS)")
	}
	netns.Close()

	ctx, cancel := context.WithTimeout(context.Background(), p.APITimeout)
	defer cancel()
	pod, nsCfg, handler, err := p.lookup(ctx, conf, log, r.namespace, r.pod, string(k8s.K8S_POD_UID))
	if err != nil {
		return podDecision{}, err
	}
	if uid := string(k8s.K8S_POD_UID); uid != "" && string(pod.UID) != uid {
		return podDecision{}, fmt.Errorf("pod %s/%s in the API server has UID %s but the runtime is creating UID %s (the pod was deleted and recreated); the runtime will retry", r.namespace, r.pod, pod.UID, uid)
	}
	var state *nodestate.State
	st, stErr := nodestate.Read(filepath.Join(conf.StateDir, nodestate.FileName))
	if stErr == nil {
		state = &st
	}
	d, err := podinfo.Decide(pod, nsCfg, conf.Policy, state, handler)
	if err != nil {
		if errors.Is(err, podinfo.ErrNoNodeState) && stErr != nil {
			return podDecision{}, fmt.Errorf("%w: %v", err, stErr)
		}
		return podDecision{}, err
	}
	return podDecision{Decision: d, pod: pod, state: state}, nil
}

// enforce derives the pod's rules (resolvers, IP families), programs and
// verifies them in its netns with the first working backend, and records
// them (enforce.Program, the code path the node agent's in-place repair
// shares); any failure leaves no rules behind (fail closed).
func (p *Plugin) enforce(args *skel.CmdArgs, conf *Conf, dec podDecision, r *record, cs *containerstate.Record) error {
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return types.NewError(types.ErrInvalidNetNS, fmt.Sprintf("authbridge-cni: network namespace %q of pod %s/%s: %v", args.Netns, r.namespace, r.pod, err), "the runtime passed a netns that does not exist (CNI_NETNS)")
	}
	defer netns.Close()
	var families []redirect.Family
	if conf.PrevResult != nil {
		families, err = familiesOf(conf.PrevResult)
	} else {
		families, err = familiesInNetns(netns)
	}
	if err != nil {
		return fmt.Errorf("pod %s/%s: %w", r.namespace, r.pod, err)
	}
	res, err := enforce.Program(enforce.Request{
		Pod: dec.pod, Policy: conf.Policy, State: dec.state, Backends: dec.Backends,
		AddrFamilies: families, NetNS: netns, NewBackend: p.NewBackend,
		StateDir: conf.StateDir, Record: *cs,
	})
	r.attempts = res.Attempts
	var invalid *enforce.InvalidSpecError
	switch {
	case errors.As(err, &invalid):
		return types.NewError(types.ErrInvalidNetworkConfig, "authbridge-cni: "+invalid.Error(), "fix the policy in the authbridge node agent config")
	case errors.Is(err, enforce.ErrNotProgrammed):
		return fmt.Errorf("pod %s/%s needs egress enforcement but its redirect rules could not be programmed, so it gets no network (fail closed): %w", r.namespace, r.pod, err)
	case err != nil:
		return err
	}
	r.backend = res.Backend
	cs.Backend, cs.Spec = res.Backend, &res.Spec
	return nil
}

// familiesInNetns is familiesOf for the plugin as an attachment: the
// families of the pod's addresses read from its netns.
func familiesInNetns(netns ns.NetNS) ([]redirect.Family, error) {
	fams, err := enforce.AddrFamilies(netns)
	if errors.Is(err, enforce.ErrNoPodAddress) {
		return nil, fmt.Errorf("%w: authbridge-cni got no prevResult (it runs as an attachment) and finds no pod address, so its network is not set up; as a Multus attachment it runs after the cluster network, and in a conflist it must come after the plugin that assigns the pod's IPs", err)
	}
	return fams, err
}

// familiesOf returns the IP families of the container's addresses in the
// previous result (addresses on host-side interfaces are ignored).
func familiesOf(prev types.Result) ([]redirect.Family, error) {
	res, err := current.NewResultFromResult(prev)
	if err != nil {
		return nil, fmt.Errorf("convert prevResult: %w", err)
	}
	var v4, v6 bool
	for _, ip := range res.IPs {
		if ip.Interface != nil && *ip.Interface >= 0 && *ip.Interface < len(res.Interfaces) && res.Interfaces[*ip.Interface].Sandbox == "" {
			continue
		}
		if ip.Address.IP.To4() != nil {
			v4 = true
		} else if ip.Address.IP != nil {
			v6 = true
		}
	}
	fams := enforce.Families(v4, v6)
	if len(fams) == 0 {
		return nil, errors.New("prevResult has no container IP address, so the families to program (IPv4/IPv6) are unknown; put authbridge-cni after the plugin that assigns the pod's IPs")
	}
	return fams, nil
}

// Del implements CNI DEL: idempotent, no API server, succeeds when the netns
// is gone.
func (p *Plugin) Del(args *skel.CmdArgs) (err error) {
	conf, log, closeLog, r, err := begin(pluginevents.OpDel, args)
	defer closeLog()
	if err != nil {
		return err
	}
	defer func() { r.err = err; p.finish(conf, log, r) }()
	// A pod the node agent repaired in place has its record under
	// repair-<podUID>: the runtime tearing down any sandbox of the pod
	// ends it (a new sandbox gets its own ADD and record).
	if k8s, kerr := ParseK8sArgs(args.Args); kerr == nil && k8s.K8S_POD_UID != "" {
		if rerr := p.delRecord(conf, log, args.Netns, containerstate.RepairID(string(k8s.K8S_POD_UID))); rerr != nil {
			log.Warn("removing the in-place repair record failed", "container", args.ContainerID, "err", rerr.Error())
		}
	}
	cs, err := containerstate.Read(conf.StateDir, args.ContainerID)
	if err != nil {
		// A corrupt record must not block the pod's deletion forever.
		log.Warn("container state unreadable; removing it", "container", args.ContainerID, "err", err.Error())
		return containerstate.Remove(conf.StateDir, args.ContainerID)
	}
	if cs == nil {
		return nil
	}
	r.namespace, r.pod, r.mode, r.reason, r.backend = cs.Namespace, cs.Pod, cs.Mode, cs.Reason, cs.Backend
	return p.delRecord(conf, log, args.Netns, args.ContainerID)
}

// delRecord removes the rules of the record id in netnsPath (best effort)
// and the record; a missing record is nothing to do.
func (p *Plugin) delRecord(conf *Conf, log *slog.Logger, netnsPath, id string) error {
	cs, err := containerstate.Read(conf.StateDir, id)
	if err != nil || cs == nil {
		if err != nil {
			return containerstate.Remove(conf.StateDir, id)
		}
		return nil
	}
	if cs.Backend != "" && netnsPath != "" {
		b, berr := p.NewBackend(cs.Backend)
		if berr == nil {
			berr = ns.WithNetNSPath(netnsPath, func(ns.NetNS) error { return b.Remove() })
		}
		var gone ns.NSPathNotExistErr
		if berr != nil && !errors.As(berr, &gone) {
			log.Warn("removing redirect rules failed", "container", id, "netns", netnsPath, "err", berr.Error())
		}
	}
	return containerstate.Remove(conf.StateDir, id)
}

// Check implements CNI CHECK: the recorded rules must still be in place.
func (p *Plugin) Check(args *skel.CmdArgs) (err error) {
	conf, log, closeLog, r, err := begin(pluginevents.OpCheck, args)
	defer closeLog()
	if err != nil {
		return err
	}
	defer func() { r.err = err; p.finish(conf, log, r) }()
	k8s, err := ParseK8sArgs(args.Args)
	if err != nil {
		return err
	}
	if !k8s.IsPod() {
		return nil
	}
	r.namespace, r.pod = string(k8s.K8S_POD_NAMESPACE), string(k8s.K8S_POD_NAME)
	if conf.Policy.IsExcludedNamespace(r.namespace) {
		return nil // ADD passed it through without a record
	}
	cs, err := containerstate.Read(conf.StateDir, args.ContainerID)
	if err != nil {
		return err
	}
	if cs == nil {
		return fmt.Errorf("pod %s/%s container %s: authbridge-cni has no record of an ADD for it (was the plugin added to the chain after the pod started, or was %s cleaned?); delete the pod to have it recreated with enforcement",
			r.namespace, r.pod, args.ContainerID, filepath.Join(conf.StateDir, containerstate.Dir))
	}
	r.mode, r.reason, r.backend = cs.Mode, cs.Reason, cs.Backend
	if cs.Mode != podmode.EnforceRedirect {
		return nil
	}
	if cs.Spec == nil || cs.Backend == "" {
		return fmt.Errorf("container state for %s is incomplete (no backend or spec); delete the pod to have it recreated", args.ContainerID)
	}
	netns, err := ns.GetNS(args.Netns)
	if err != nil {
		return fmt.Errorf("pod %s/%s: network namespace %s: %w", r.namespace, r.pod, args.Netns, err)
	}
	defer netns.Close()
	// The same check the node agent's drift pass runs every verifyInterval.
	if err := enforce.Verify(netns, p.NewBackend, *cs); err != nil {
		return fmt.Errorf("pod %s/%s: the %s redirect rules in its netns no longer match what ADD programmed, so its egress is not enforced: %w; the node agent re-applies them within its verifyInterval (EgressRulesDrifted Event)",
			r.namespace, r.pod, cs.Backend, err)
	}
	return nil
}

// Status implements CNI STATUS (see status.go for when it fails).
func (p *Plugin) Status(args *skel.CmdArgs) (err error) {
	conf, log, closeLog, r, err := begin(pluginevents.OpStatus, args)
	defer closeLog()
	if err != nil {
		return err
	}
	defer func() { r.err = err; p.finish(conf, log, r) }()
	return p.status(conf, log, r)
}

// GC implements CNI GC: records of containers not in
// cni.dev/valid-attachments are removed (their netns, and with it their
// rules, are gone). Nothing else is touched.
func (p *Plugin) GC(args *skel.CmdArgs) (err error) {
	conf, log, closeLog, r, err := begin(pluginevents.OpGC, args)
	defer closeLog()
	if err != nil {
		return err
	}
	defer func() { r.err = err; p.finish(conf, log, r) }()
	valid := conf.ValidAttachments
	if valid == nil {
		valid = conf.LegacyAttachments
	}
	if valid == nil {
		// No list at all is not "nothing is valid": keep every record.
		log.Warn("GC without cni.dev/valid-attachments; nothing removed")
		return nil
	}
	keep := map[string]bool{}
	for _, a := range valid {
		keep[a.ContainerID] = true
	}
	removed, err := containerstate.GC(conf.StateDir, keep)
	if len(removed) > 0 {
		log.Info("garbage-collected container states", "containers", removed)
	}
	return err
}
