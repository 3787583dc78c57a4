// Package agent is the authbridge node agent's run loop: it probes which
// redirect backends work and writes the node state file the plugin reads,
// installs the plugin and keeps it installed, labels its Node with the
// capability, turns the plugin's events into metrics and Kubernetes Events,
// repairs AuthBridge pods that started without rules in place, verifies
// every enforced pod's rules every verifyInterval (re-applying drifted
// ones), keeps the pods' egress-enforced condition, and serves /metrics,
// /healthz and /readyz.
//
// Order at start, chosen so the plugin never runs without what it needs:
// probe (the node state file exists) -> decision socket (node-scoped
// informers) -> the plugin's Node-bound credential -> plugin binary ->
// conflist entry -> Node labels -> ready (and the opt-in startup taint
// removed). On SIGTERM the plugin stays
// (a rollout, a reboot, an eviction): only a real uninstall (Options.
// UninstallCheck, lifecycle.go) removes the entry before the binary and the
// capability labels, because a node without the plugin can no longer
// enforce.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/enforce"
	"github.com/kagenti/authbridge-node/internal/metrics"
	"github.com/kagenti/authbridge-node/internal/podnetns"
	"github.com/kagenti/authbridge-node/pkg/capability"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// Node labels and annotations the agent owns.
const (
	LabelEgressRedirect        = "authbridge.kagenti.io/egress-redirect"
	LabelEgressRedirectCapable = "authbridge.kagenti.io/egress-redirect-capable"
	AnnotationLastProbe        = "authbridge.kagenti.io/last-probe"
	// BackendNone is LabelEgressRedirect's value when no backend works.
	BackendNone = "none"
)

// Event reasons.
const (
	ReasonCapabilityChanged  = "EgressRedirectCapabilityChanged"
	ReasonCooperativeEgress  = "CooperativeEgress"
	ReasonEnforcementFailed  = "EgressEnforcementFailed"
	ReasonEgressRulesMissing = "EgressRulesMissing"
	ReasonPodRepaired        = "EgressRulesRepair"
	// ReasonNotEnforceable: an AuthBridge pod with hostNetwork: true gets
	// no CNI ADD, so no rules; the agent says so (Warning, once per pod).
	ReasonNotEnforceable = "EgressNotEnforceable"
	// EventComponent is the events' source component.
	EventComponent = "authbridge-node-agent"
)

// Installer puts the plugin on the node and keeps it there.
type Installer interface {
	// Run installs the plugin, calls installed once it is in place, and
	// keeps it installed until ctx ends.
	Run(ctx context.Context, installed func()) error
	// Uninstall removes what Run installed (entry before binary); called
	// after Run returned.
	Uninstall(ctx context.Context) error
}

// NodeExtension is an optional per-node installer run after the plugin is
// installed (the Kata agent policy). Its marks are published on the Node; a
// mark with an empty value removes that label or annotation.
type NodeExtension interface {
	Name() string
	Install(ctx context.Context) (NodeMarks, error)
	Uninstall(ctx context.Context) error
}

// NodeMarks are labels and annotations to set ("" removes) on the Node.
type NodeMarks struct {
	Labels      map[string]string
	Annotations map[string]string
}

// Options configure an Agent. Config, NodeName, Client, Probe and Installer
// are required.
type Options struct {
	Config   config.Agent
	NodeName string
	Client   kubernetes.Interface
	Probe    capability.ProbeFunc
	// Installer is nil only in tests that exercise the rest.
	Installer  Installer
	Extensions []NodeExtension
	// Registry serves /metrics; a new one when nil.
	Registry *prometheus.Registry
	Logger   *slog.Logger
	// HostRoot is where the host's / is mounted: the kubelet config is
	// searched there (hostdns.KubeletConfigCandidates) unless KubeletConfigPath is
	// set, and the kubelet's resolvConf is read there.
	HostRoot string
	// KubeletConfigPath is the host's kubelet config (clusterDNS,
	// resolvConf) in the agent's view; "" searches under HostRoot.
	KubeletConfigPath string
	// ResolvConfPath overrides the node resolv.conf; "" reads the
	// kubelet's resolvConf under HostRoot, falling back to etc/resolv.conf.
	ResolvConfPath string
	// IPv6DisabledPath is the host's disable_ipv6 sysctl file
	// (DefaultIPv6DisabledPath in production); "" probes IPv4 only.
	IPv6DisabledPath string
	// Getenv reads the environment (default os.Getenv).
	Getenv func(string) string
	// PodCheckInterval is how often the pods-per-mode gauge and the pods
	// without rules are recomputed (default 30s).
	PodCheckInterval time.Duration
	// PodsWithoutRulesGrace is how old a pod's sandbox must be before a
	// missing plugin state file counts as "no rules" (default 60s).
	PodsWithoutRulesGrace time.Duration
	// VerifyInterval is how often every enforced pod's rules are verified
	// (default Config.VerifyInterval).
	VerifyInterval time.Duration
	// NetNSFinder finds a running pod's netns for in-place repair; default
	// podnetns.Finder on HostRoot's proc.
	NetNSFinder NetNSFinder
	// NewBackend returns a redirect backend by name (default redirect.New).
	NewBackend enforce.NewBackendFunc
	// Listener for the health server; Config.MetricsAddr when nil.
	Listener net.Listener
	// APIRetryMax caps the backoff between failed API calls (default 30s).
	APIRetryMax time.Duration
	// DecisionWait is how long a decision answer waits for a pod the cache
	// has not seen (decision.DefaultWait when 0).
	DecisionWait time.Duration
	// UninstallCheck decides at shutdown whether this is a real uninstall
	// (OwnerCheck in production); nil keeps the plugin installed.
	UninstallCheck UninstallCheck
}

// Agent is one node's agent. Create it with New and call Run once.
type Agent struct {
	o       Options
	cfg     config.Agent
	log     *slog.Logger
	reg     *prometheus.Registry
	metrics *metrics.Metrics
	health  *health

	mu       sync.Mutex
	desired  *nodeDesired // labels/annotation to publish
	ready    bool
	reported map[string]bool // pod UIDs already reported without rules
	// excludedWarned: namespaces of excludeNamespaces found running
	// AuthBridge pods (warned once each).
	excludedWarned map[string]bool
	mismatch       map[string]bool // records whose drift could not be re-applied

	// decisions is the node-scoped informer cache (set by startBackground
	// before any loop runs; nil in tests that drive a pass directly, which
	// then list from the API server).
	decisions *DecisionCache

	nodeKick   chan struct{}
	verifyKick chan struct{}
	apiWork    chan func(context.Context)
	nodeSynced chan struct{}
}

// New validates the options and registers the metrics.
func New(o Options) (*Agent, error) {
	switch {
	case o.NodeName == "":
		return nil, errors.New("node name is empty: set NODE_NAME from the downward API (fieldRef spec.nodeName)")
	case o.Client == nil:
		return nil, errors.New("kubernetes client is nil")
	case o.Probe == nil:
		return nil, errors.New("probe function is nil")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.APIRetryMax <= 0 {
		o.APIRetryMax = 30 * time.Second
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.PodCheckInterval <= 0 {
		o.PodCheckInterval = 30 * time.Second
	}
	if o.PodsWithoutRulesGrace <= 0 {
		o.PodsWithoutRulesGrace = 60 * time.Second
	}
	if o.VerifyInterval <= 0 {
		o.VerifyInterval = o.Config.VerifyInterval.Duration
	}
	if o.VerifyInterval <= 0 {
		o.VerifyInterval = config.DefaultVerifyInterval
	}
	if o.NetNSFinder == nil {
		o.NetNSFinder = podnetns.Finder{ProcRoot: filepath.Join(orRoot(o.HostRoot), "proc")}
	}
	if o.NewBackend == nil {
		o.NewBackend = redirect.New
	}
	a := &Agent{
		o:              o,
		cfg:            o.Config,
		log:            o.Logger.With("node", o.NodeName),
		reg:            o.Registry,
		metrics:        metrics.NewMetrics(o.Registry),
		reported:       map[string]bool{},
		excludedWarned: map[string]bool{},
		mismatch:       map[string]bool{},
		nodeKick:       make(chan struct{}, 1),
		verifyKick:     make(chan struct{}, 1),
		apiWork:        make(chan func(context.Context), 256),
		nodeSynced:     make(chan struct{}, 1),
	}
	a.health = &health{}
	w := a.cfg.Weakenings()
	for _, s := range w {
		a.log.Warn("configuration weakens egress enforcement", "setting", s, "see", config.SecurityModelDoc)
	}
	for _, d := range a.cfg.Deprecations() {
		a.log.Warn("configuration key ignored", "reason", d)
	}
	// The e2e test knob is honoured by the production probe: a backend it
	// names is reported failed, which turns auto pods cooperative. Make it
	// as visible as a config weakening.
	if v := o.Getenv(capability.ForceFailEnv); v != "" {
		a.log.Warn("test knob set: the probe reports these backends as failed without probing; never set it in production", "env", capability.ForceFailEnv, "value", v)
		w = append(w, capability.ForceFailEnv)
	}
	// Extensions with weakening options (the Kata installer's) count too.
	for _, ext := range o.Extensions {
		if wk, ok := ext.(interface{ Weakenings() []string }); ok {
			for _, s := range wk.Weakenings() {
				a.log.Warn("node extension option weakens its policy", "extension", ext.Name(), "setting", s, "see", "docs/kata-secure-by-default.md")
				w = append(w, s)
			}
		}
	}
	a.metrics.SetWeakenings(w)
	return a, nil
}

// Metrics exposes the agent's collectors (tests, extensions).
func (a *Agent) Metrics() *metrics.Metrics { return a.metrics }

// Handler serves /metrics, /healthz and /readyz.
func (a *Agent) Handler() http.Handler { return a.health.handler(a.reg) }

// Ready reports whether the agent is ready and, if not, why.
func (a *Agent) Ready() (bool, string) { return a.health.ready() }

// StatePath is the node state file the plugin reads.
func (a *Agent) StatePath() string { return filepath.Join(a.cfg.StateDir, nodestate.FileName) }

// SocketPath is the plugin events socket.
func (a *Agent) SocketPath() string { return filepath.Join(a.cfg.StateDir, pluginevents.SocketName) }

// Run runs the agent until ctx ends, then uninstalls (see the package
// documentation for the order). It returns an error only for failures that
// make running pointless (the state dir or health port unusable).
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.StateDir, 0o755); err != nil {
		return fmt.Errorf("create state dir %s: %w", a.cfg.StateDir, err)
	}
	stopHealth, err := a.serveHealth()
	if err != nil {
		return err
	}
	defer stopHealth()

	var wg sync.WaitGroup
	defer wg.Wait()
	bg, stopBG := context.WithCancel(ctx)
	defer stopBG()
	a.startBackground(bg, &wg)

	// 1. Probe first: the plugin reads the state file on every ADD.
	a.ProbeOnce(ctx)

	// 2. Install and keep the plugin (its own context: it outlives ctx
	// until shutdown has stopped it, so it never races the uninstall).
	instCtx, stopInstall := context.WithCancel(context.Background())
	defer stopInstall()
	installed, installDone := a.startInstaller(instCtx)
	a.waitInstalled(ctx, installed, installDone)
	if ctx.Err() == nil {
		for _, ext := range a.o.Extensions {
			a.installExtension(ctx, ext)
		}
	}
	a.kickNode()

	// 3. Keep probing, syncing the Node and checking pods until ctx ends.
	a.loop(ctx)

	// 4. Shutdown: stop the installer and the background work, then
	// uninstall.
	a.health.setStopping()
	a.metrics.AgentReady.Set(0)
	stopInstall()
	<-installDone
	stopBG()
	wg.Wait()
	down, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return a.shutdown(down)
}

// serveHealth serves /metrics, /healthz and /readyz on metricsAddr (or the
// test's Listener) and returns how to stop it.
func (a *Agent) serveHealth() (func(), error) {
	ln := a.o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", a.cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("health server on metricsAddr %s: %w", a.cfg.MetricsAddr, err)
		}
	}
	hs := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("health server stopped", "err", err)
		}
	}()
	return func() { hs.Close() }, nil
}

// startBackground starts, on wg, the plugin events server, the API worker
// (Events) and the Node sync loop, all stopped by ctx. The events socket
// exists when it returns, before the first probe and install, so the
// plugin's first events reach the agent.
func (a *Agent) startBackground(ctx context.Context, wg *sync.WaitGroup) {
	if events, err := pluginevents.Listen(a.SocketPath()); err != nil {
		a.log.Error("cannot listen for plugin events", "socket", a.SocketPath(), "err", err)
	} else {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := events.Serve(ctx, a.HandlePluginEvent); err != nil {
				a.log.Error("plugin events listener stopped: CNI metrics and pod events are lost", "err", err)
			}
		}()
	}
	a.decisions = NewDecisionCache(a.o.Client, a.o.NodeName, a.o.DecisionWait)
	a.decisions.Start(ctx)
	wg.Add(4)
	go func() { defer wg.Done(); a.apiWorker(ctx) }()
	go func() { defer wg.Done(); a.nodeSyncLoop(ctx) }()
	go func() { defer wg.Done(); a.serveDecisions(ctx, a.decisions) }()
	go func() { defer wg.Done(); a.verifyLoop(ctx) }()
}

// startInstaller runs the Installer until ctx ends: installed is closed
// once it first installed, installDone when it returned. Without an
// Installer both are closed at once.
func (a *Agent) startInstaller(ctx context.Context) (installed, installDone chan struct{}) {
	installed, installDone = make(chan struct{}), make(chan struct{})
	if a.o.Installer == nil {
		close(installed)
		close(installDone)
		return installed, installDone
	}
	go func() {
		defer close(installDone)
		var once sync.Once
		err := a.o.Installer.Run(ctx, func() { once.Do(func() { close(installed) }) })
		if err != nil && ctx.Err() == nil {
			a.log.Error("plugin installer stopped: the node no longer keeps the authbridge-cni entry", "err", err)
			a.health.setInstallErr(err)
		}
	}()
	return installed, installDone
}

// waitInstalled waits for the first install (then marks it in health), for
// ctx to end, or for the installer to give up.
func (a *Agent) waitInstalled(ctx context.Context, installed, installDone <-chan struct{}) {
	select {
	case <-installed:
		a.health.setInstalled()
		a.log.Info("authbridge-cni plugin installed")
	case <-ctx.Done():
	case <-installDone:
		select {
		case <-installed:
			a.health.setInstalled()
		default:
			a.log.Error("plugin installer ended before installing; the agent stays unready")
		}
	}
}

// loop re-probes every probeInterval, checks pods every PodCheckInterval
// and turns ready once the Node is synced, until ctx ends.
func (a *Agent) loop(ctx context.Context) {
	ticker := time.NewTicker(a.cfg.ProbeInterval.Duration)
	defer ticker.Stop()
	podTicker := time.NewTicker(a.o.PodCheckInterval)
	defer podTicker.Stop()
	a.UpdatePodsGauge()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-a.nodeSynced:
			if a.health.setNodeSynced() {
				a.becameReady(ctx)
			}
		case <-ticker.C:
			a.ProbeOnce(ctx)
		case <-podTicker.C:
			a.UpdatePodsGauge()
			a.CheckPodsWithoutRules(ctx)
		}
	}
}

func (a *Agent) becameReady(ctx context.Context) {
	a.mu.Lock()
	a.ready = true
	a.mu.Unlock()
	a.metrics.AgentReady.Set(1)
	a.log.Info("node agent ready")
	go a.removeStartupTaint(ctx) // installed, probed and labelled
	a.CheckPodsWithoutRules(ctx)
}

// shutdown keeps the plugin installed unless UninstallCheck says this is a
// real uninstall.
func (a *Agent) shutdown(ctx context.Context) error {
	v := Verdict{Why: "no uninstall check configured; keeping the plugin installed"}
	if a.o.UninstallCheck != nil {
		// Bounded well inside the pod's grace period: an API server that
		// does not answer means "cannot tell", which keeps the plugin.
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		v = a.o.UninstallCheck(cctx)
		cancel()
	}
	if !v.Uninstall {
		a.log.Info("agent stopping; the authbridge-cni plugin, its entry and the Node labels stay", "why", v.Why)
		return nil
	}
	a.log.Info("real uninstall: removing the authbridge-cni plugin", "why", v.Why)
	return a.Uninstall(ctx)
}

// Uninstall removes the plugin (entry before binary, then its credential),
// runs the extensions' uninstall and removes the capability labels.
func (a *Agent) Uninstall(ctx context.Context) error {
	var errs []error
	if a.o.Installer != nil {
		if err := a.o.Installer.Uninstall(ctx); err != nil {
			errs = append(errs, fmt.Errorf("uninstall plugin: %w", err))
		} else {
			a.log.Info("authbridge-cni plugin uninstalled")
		}
	}
	for _, ext := range a.o.Extensions {
		if err := ext.Uninstall(ctx); err != nil {
			errs = append(errs, fmt.Errorf("uninstall %s: %w", ext.Name(), err))
		}
	}
	if err := a.removeNodeLabels(ctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (a *Agent) installExtension(ctx context.Context, ext NodeExtension) {
	marks, err := ext.Install(ctx)
	if err != nil {
		a.log.Error("node extension install failed", "extension", ext.Name(), "err", err)
	} else {
		a.log.Info("node extension installed", "extension", ext.Name())
	}
	a.mu.Lock()
	if a.desired == nil {
		a.desired = &nodeDesired{}
	}
	a.desired.addMarks(marks)
	a.mu.Unlock()
	a.startWatch(ctx, ext)
}

// orRoot is hostRoot, "/" when unset.
func orRoot(hostRoot string) string {
	if hostRoot == "" {
		return "/"
	}
	return hostRoot
}

// backoff doubles d up to max.
func backoff(d, max time.Duration) time.Duration {
	d *= 2
	if d > max {
		return max
	}
	return d
}
