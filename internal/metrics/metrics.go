// Package metrics defines the node agent's Prometheus metrics (prefix
// authbridge_). Nothing is registered globally: NewMetrics registers on the
// registry it is given, and the agent serves that registry on /metrics.
//
// Pods per mode come two ways: authbridge_cni_pods_total{mode} counts the
// plugin's successful ADDs (rate() shows how pods are being admitted), and
// authbridge_pods{mode} is a gauge of the pods that currently have plugin
// state on the node (the agent counts the plugin's per-sandbox files, which
// DEL removes).
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/pluginevents"
	"github.com/kagenti/authbridge-node/pkg/podmode"
)

// Namespace is every metric's prefix.
const Namespace = "authbridge"

// Metrics are the agent's collectors.
type Metrics struct {
	// ProbeBackendWorks is 1 when the last probe found the backend working.
	ProbeBackendWorks *prometheus.GaugeVec
	// ProbeDuration is each backend probe's duration.
	ProbeDuration *prometheus.HistogramVec
	// EgressRedirectCapable is 1 when at least one preferred backend works.
	EgressRedirectCapable prometheus.Gauge
	// CNIOperations counts plugin invocations by op and result.
	CNIOperations *prometheus.CounterVec
	// CNIAddDuration is the plugin's ADD latency as the plugin measured it.
	CNIAddDuration prometheus.Histogram
	// CNIPods counts successful ADDs per mode (enforce-redirect, cooperative, skipped).
	CNIPods *prometheus.CounterVec
	// Pods is the number of pods with plugin state on the node per mode.
	Pods *prometheus.GaugeVec
	// CooperativePods counts cooperative ADDs per reason.
	CooperativePods *prometheus.CounterVec
	// ConflistReinsertions counts entries the keeper had to write again.
	ConflistReinsertions prometheus.Counter
	// TokenRefreshes counts rewrites of the plugin's kubeconfig token.
	TokenRefreshes prometheus.Counter
	// TokenRefreshErrors counts failed attempts to refresh it.
	TokenRefreshErrors prometheus.Counter
	// DecisionAnswers counts the agent's answers on the decision socket by
	// source: cache, api, error.
	DecisionAnswers *prometheus.CounterVec
	// ConfigWeakenings is 1 for each weakening setting in the config.
	ConfigWeakenings *prometheus.GaugeVec
	// PodsWithoutRules is the number of sidecar pods on this node whose
	// sandbox has no plugin state (so no rules).
	PodsWithoutRules prometheus.Gauge
	// HostNetworkPods is the number of AuthBridge pods on this node with
	// hostNetwork: true: no CNI ADD, so no rules can exist for them.
	HostNetworkPods prometheus.Gauge
	// PodsRepaired counts pods deleted by repair (repairPods).
	PodsRepaired prometheus.Counter
	// RulesDrift counts enforced pods found with rules that no longer
	// match their record (and re-applied), by backend.
	RulesDrift *prometheus.CounterVec
	// PodsRulesMismatched is the number of enforced pods whose rules did
	// not match after the last verify pass (re-apply failed).
	PodsRulesMismatched prometheus.Gauge
	// VerifyPassDuration is one drift-check pass over every enforced pod.
	VerifyPassDuration prometheus.Histogram
	// RulesRepairs counts in-place repairs of pods without rules by result.
	RulesRepairs *prometheus.CounterVec
	// PodEnforcedSeconds is the time from a pod's sandbox getting its
	// network to its egress-enforced condition first turning True.
	PodEnforcedSeconds prometheus.Histogram
	// AgentReady is 1 once installed and probed.
	AgentReady prometheus.Gauge
	// NodeUpdateErrors counts failed Node label/annotation patches.
	NodeUpdateErrors prometheus.Counter
}

// NewMetrics creates the collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ProbeBackendWorks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "probe_backend_works",
			Help: "1 if the last capability probe found the redirect backend working on this node, else 0.",
		}, []string{"backend"}),
		ProbeDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "probe_duration_seconds",
			Help:    "Duration of one backend's capability probe.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}, []string{"backend"}),
		EgressRedirectCapable: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "egress_redirect_capable",
			Help: "1 if at least one configured redirect backend works on this node, else 0.",
		}),
		CNIOperations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cni_operations_total",
			Help: "CNI plugin invocations reported by the plugin, by operation (ADD, DEL, CHECK, STATUS, GC) and result (success, failure).",
		}, []string{"op", "result"}),
		CNIAddDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "cni_add_duration_seconds",
			Help:    "CNI ADD latency of the authbridge plugin, as measured by the plugin.",
			Buckets: []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5},
		}),
		CNIPods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cni_pods_total",
			Help: "Successful CNI ADDs by the mode the pod got: enforce-redirect, cooperative, skipped (no AuthBridge sidecar).",
		}, []string{"mode"}),
		Pods: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "pods",
			Help: "Pods on this node the plugin set up and has not torn down, by mode: enforce-redirect, cooperative, skipped (no AuthBridge sidecar). Counted from the plugin's per-sandbox state files.",
		}, []string{"mode"}),
		CooperativePods: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "cooperative_pods_total",
			Help: "Successful ADDs of AuthBridge pods left in cooperative mode (no redirect), by reason: annotation, namespace-configmap, cluster-default, auto-incapable-node, vm-runtime-class, sandboxed-runtime.",
		}, []string{"reason"}),
		ConflistReinsertions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "conflist_reinsertions_total",
			Help: "Times the agent re-inserted the plugin's entry after the primary CNI rewrote its conflist.",
		}),
		TokenRefreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "token_refreshes_total",
			Help: "Rewrites of the plugin's kubeconfig with a fresh Node-bound token.",
		}),
		TokenRefreshErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "token_refresh_errors_total",
			Help: "Failed attempts to refresh the plugin's Node-bound credential (retried with backoff; the token lasts 24 h and is refreshed at 12 h).",
		}),
		DecisionAnswers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "decision_answers_total",
			Help: "The agent's answers to the plugin's decision queries, by source: cache (no API request), api (the pod was not in the cache within 2 s and was read from the API server), error (the plugin then asks the API server itself).",
		}, []string{"source"}),
		ConfigWeakenings: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "config_weakenings",
			Help: "1 for each configuration setting that weakens enforcement (allowCooperative, defaultMode=..., excludeOutboundCIDRs, excludeOutboundPorts, allowedPodNameservers, markBypass), and for the AUTHBRIDGE_PROBE_FORCE_FAIL test knob when set.",
		}, []string{"setting"}),
		PodsWithoutRules: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "pods_without_rules",
			Help: "Running AuthBridge pods on this node whose sandbox got its network while the plugin was not in the chain (no plugin state, sandbox older than the grace period): they have no redirect rules.",
		}),
		HostNetworkPods: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "hostnetwork_pods",
			Help: "Running AuthBridge pods on this node with hostNetwork: true: they get no CNI ADD, so their egress is not enforced (manifests/policies refuses them).",
		}),
		PodsRepaired: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "pods_repaired_total",
			Help: "Pods without rules deleted by the agent so their controller recreates them (repairPods).",
		}),
		RulesDrift: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rules_drift_total",
			Help: "Enforced pods whose redirect rules, read back from the kernel, no longer matched what was programmed (flushed, changed, jump moved, extra rule); each is re-applied. By the record's backend.",
		}, []string{"backend"}),
		PodsRulesMismatched: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "pods_rules_mismatched",
			Help: "Enforced pods on this node whose rules still did not match after the last verify pass (re-applying failed): their egress is not enforced.",
		}),
		VerifyPassDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "verify_pass_duration_seconds",
			Help:    "Duration of one verify pass: every enforced pod's rules read back from the kernel (and drifted ones re-applied).",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10},
		}),
		RulesRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: Namespace, Name: "rules_repairs_total",
			Help: "In-place repairs of running AuthBridge pods that had no rules (the agent programmed them from the host), by result: success, failure.",
		}, []string{"result"}),
		PodEnforcedSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: Namespace, Name: "pod_enforced_seconds",
			Help:    "Time from a pod's sandbox getting its network to its authbridge.kagenti.io/egress-enforced condition first turning True.",
			Buckets: []float64{0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300},
		}),
		AgentReady: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: Namespace, Name: "agent_ready",
			Help: "1 once the plugin is installed and the node probed at least once, else 0.",
		}),
		NodeUpdateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: Namespace, Name: "node_update_errors_total",
			Help: "Failed attempts to patch this Node's capability labels and annotation.",
		}),
	}
	reg.MustRegister(m.ProbeBackendWorks, m.ProbeDuration, m.EgressRedirectCapable,
		m.CNIOperations, m.CNIAddDuration, m.CNIPods, m.Pods, m.CooperativePods,
		m.ConflistReinsertions, m.TokenRefreshes, m.TokenRefreshErrors, m.DecisionAnswers, m.ConfigWeakenings,
		m.PodsWithoutRules, m.HostNetworkPods, m.PodsRepaired, m.RulesDrift, m.PodsRulesMismatched,
		m.VerifyPassDuration, m.RulesRepairs, m.PodEnforcedSeconds, m.AgentReady, m.NodeUpdateErrors)
	return m
}

// ObserveProbe records one probe run.
func (m *Metrics) ObserveProbe(results []nodestate.BackendResult) {
	capable := 0.0
	for _, r := range results {
		v := 0.0
		if r.Works {
			v, capable = 1, 1
		}
		m.ProbeBackendWorks.WithLabelValues(r.Backend).Set(v)
		m.ProbeDuration.WithLabelValues(r.Backend).Observe(r.Duration.Seconds())
	}
	m.EgressRedirectCapable.Set(capable)
}

// ObservePluginEvent records one plugin event. Label values are limited to
// the known ones so a malformed datagram cannot blow up cardinality.
func (m *Metrics) ObservePluginEvent(ev pluginevents.Event) {
	op := oneOf(ev.Op, pluginevents.Ops...)
	result := oneOf(ev.Result, pluginevents.Success, pluginevents.Failure)
	m.CNIOperations.WithLabelValues(op, result).Inc()
	if op != string(pluginevents.OpAdd) {
		return
	}
	m.CNIAddDuration.Observe(ev.Seconds)
	if result != string(pluginevents.Success) {
		return
	}
	mode := oneOf(ev.Mode, podmode.Labels()...)
	m.CNIPods.WithLabelValues(mode).Inc()
	if mode == podmode.Cooperative.Label() {
		m.CooperativePods.WithLabelValues(oneOf(ev.Reason, podmode.CooperativeReasons...)).Inc()
	}
}

// SetPodsPerMode sets authbridge_pods{mode} from counts per mode (as the
// plugin's container records hold it); every mode is exported under its
// label, 0 when absent, and unknown modes count as other.
func (m *Metrics) SetPodsPerMode(counts map[podmode.Mode]int) {
	out := map[string]float64{}
	for _, mode := range podmode.Modes {
		out[mode.Label()] = 0
	}
	for mode, n := range counts {
		label := "other"
		if known(mode) {
			label = mode.Label()
		}
		out[label] += float64(n)
	}
	m.Pods.Reset()
	for label, v := range out {
		m.Pods.WithLabelValues(label).Set(v)
	}
}

func known(mode podmode.Mode) bool {
	for _, m := range podmode.Modes {
		if m == mode {
			return true
		}
	}
	return false
}

// SetWeakenings sets authbridge_config_weakenings{setting} to 1 for each.
func (m *Metrics) SetWeakenings(settings []string) {
	m.ConfigWeakenings.Reset()
	for _, s := range settings {
		m.ConfigWeakenings.WithLabelValues(s).Set(1)
	}
}

func oneOf[T ~string](v T, allowed ...T) string {
	for _, a := range allowed {
		if v == a {
			return string(v)
		}
	}
	return "other"
}
