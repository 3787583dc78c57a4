// Package config is the one configuration shared by the node agent (its
// ConfigMap) and the CNI plugin (the entry the agent writes into the
// conflist). Defaults are strict; every weakening is explicit and validated.
package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"

	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// Mode is a pod's egress enforcement mode.
type Mode string

const (
	ModeEnforceRedirect Mode = "enforce-redirect"
	ModeNone            Mode = "none"
	ModeAuto            Mode = "auto"
)

// Modes lists the allowed values, in the order docs and errors show them.
var Modes = []Mode{ModeEnforceRedirect, ModeAuto, ModeNone}

// ParseMode refuses anything but the three modes, naming the allowed values.
func ParseMode(s string) (Mode, error) {
	for _, m := range Modes {
		if string(m) == s {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown egress enforcement mode %q: allowed values are %q, %q, %q", s, ModeEnforceRedirect, ModeAuto, ModeNone)
}

// Annotation and ConfigMap names that select a pod's mode.
const (
	AnnotationEgressEnforcement = "kagenti.io/egress-enforcement"
	NamespaceConfigMap          = "authbridge-runtime-config"
	NamespaceConfigMapKey       = "config.yaml"
)

// SecurityModelVersion is the version of docs/security-model.md an admin must
// acknowledge to allow cooperative mode. Bump it when the document's threat
// table changes, so every acknowledgement is re-read.
//
// v2 (issue 11): the mark bypass, invalid-state, ICMP and ND rules changed;
// a pod annotation may only strengthen its namespace's mode; the
// admission policy (manifests/policies) is what stops AF_PACKET and the
// proxy UID; hostNetwork AuthBridge pods are reported.
const (
	SecurityModelVersion = "security-model-v2"
	SecurityModelDoc     = "docs/security-model.md"
)

// PreviousSecurityModelVersions are the versions an acknowledgement may
// still name after an upgrade: the agent refuses them with an error that
// names the current version and the section of the document saying what
// changed.
var PreviousSecurityModelVersions = []string{"security-model-v1"}

// Policy is the enforcement policy: what mode pods get and how rules look.
type Policy struct {
	// DefaultMode is the cluster default (enforce-redirect).
	DefaultMode Mode `json:"defaultMode,omitempty"`
	// AllowCooperative permits pods to run without redirect (mode none, or
	// auto on an incapable node). Requires AcknowledgeCooperativeRisks.
	AllowCooperative bool `json:"allowCooperative,omitempty"`
	// AcknowledgeCooperativeRisks must equal SecurityModelVersion when
	// AllowCooperative is true.
	AcknowledgeCooperativeRisks string `json:"acknowledgeCooperativeRisks,omitempty"`
	// Backends is the preference order of redirect backends.
	Backends []string `json:"backends,omitempty"`
	// SidecarContainerNames recognise an AuthBridge pod: a container (or a
	// native sidecar init container) with one of these names.
	SidecarContainerNames []string `json:"sidecarContainerNames,omitempty"`
	// VMRuntimeClasses name the RuntimeClasses whose pods run in a VM
	// sandbox (Kata, peer-pods): their traffic leaves the guest through tc
	// redirection below the pod netns's netfilter, so the plugin's rules
	// cannot enforce anything for them. An entry ending in "*" is a prefix.
	VMRuntimeClasses []string `json:"vmRuntimeClasses,omitempty"`
	// NetfilterRuntimeHandlers are the runtime handlers whose pods' traffic
	// crosses the pod netns's netfilter (runc, crun): only their pods get
	// rules. A pod's handler is its RuntimeClass's, else the node's default
	// handler (read by the agent from the runtime's config; "" when it
	// could not tell). Every other handler (gVisor's runsc, Kata's VMs) is
	// treated like a vmRuntimeClasses pod: enforce-redirect fails closed,
	// auto goes cooperative (reason sandboxed-runtime). vmRuntimeClasses
	// keeps working on top of this, by RuntimeClass name.
	NetfilterRuntimeHandlers []string `json:"netfilterRuntimeHandlers,omitempty"`

	ProxyUID             uint32   `json:"proxyUID,omitempty"`
	OutboundPort         uint16   `json:"outboundPort,omitempty"`
	InboundRedirect      bool     `json:"inboundRedirect,omitempty"`
	InboundPort          uint16   `json:"inboundPort,omitempty"`
	ExcludeInboundPorts  []uint16 `json:"excludeInboundPorts,omitempty"`
	ExcludeOutboundCIDRs []string `json:"excludeOutboundCIDRs,omitempty"`
	ExcludeOutboundPorts []uint16 `json:"excludeOutboundPorts,omitempty"`
	Mark                 uint32   `json:"mark,omitempty"`
	MarkMask             uint32   `json:"markMask,omitempty"`
	// MarkBypass lets TCP from sockets carrying Mark go direct, for a proxy
	// that cannot run as ProxyUID. Off by default: any process that can set
	// SO_MARK bypasses with it (CAP_NET_ADMIN, or CAP_NET_RAW since Linux
	// 5.17), so it is a weakening that needs the admission policy refusing
	// those capabilities (manifests/policies).
	MarkBypass bool `json:"markBypass,omitempty"`
	// ClusterDNS overrides the cluster DNS service IPs used as resolvers for
	// ClusterFirst pods (normally taken from the kubelet config by the agent).
	ClusterDNS []string `json:"clusterDNS,omitempty"`
	// AllowedPodNameservers are CIDRs a pod's own dnsConfig.nameservers may
	// fall in, beyond the cluster DNS IPs and the node's resolvers: DNS to a
	// pod-named server goes direct (unproxied), so whoever writes the pod
	// spec must not pick it freely. Empty by default.
	AllowedPodNameservers []string `json:"allowedPodNameservers,omitempty"`
	// ExcludeNamespaces are namespaces whose pods the plugin passes
	// through untouched, with no API request and no agent round trip: the
	// node's own infrastructure (CoreDNS, the CNI itself) must start even
	// while the API server or the agent is away. nil means the default
	// [kube-system]; an explicit [] excludes nothing (hence no omitempty:
	// the agent writes the defaulted list into the conflist entry).
	ExcludeNamespaces []string `json:"excludeNamespaces"`
}

// DefaultExcludeNamespaces is excludeNamespaces when the key is not set.
var DefaultExcludeNamespaces = []string{"kube-system"}

// IsExcludedNamespace reports whether pods of ns are passed through.
func (p Policy) IsExcludedNamespace(ns string) bool {
	for _, n := range p.ExcludeNamespaces {
		if n == ns {
			return true
		}
	}
	return false
}

// DefaultSidecarContainerName is the AuthBridge sidecar's container name.
const DefaultSidecarContainerName = "authbridge-proxy"

// DefaultVMRuntimeClasses matches Kata's RuntimeClasses (kata, kata-qemu,
// kata-clh, kata-qemu-tdx, kata-remote for peer-pods, ...).
const DefaultVMRuntimeClasses = "kata*"

// DefaultNetfilterRuntimeHandlers are the OCI runtimes that run a pod's
// processes in the pod netns itself, and "" (the node's default handler when
// the agent could not read it from the runtime's config).
var DefaultNetfilterRuntimeHandlers = []string{"runc", "crun", ""}

// IsNetfilterHandler reports whether pods of runtime handler h send their
// traffic through the pod netns's netfilter (see NetfilterRuntimeHandlers).
func (p Policy) IsNetfilterHandler(h string) bool {
	return slices.Contains(p.NetfilterRuntimeHandlers, h)
}

// IsVMRuntimeClass reports whether a pod's runtimeClassName is a VM sandbox.
func (p Policy) IsVMRuntimeClass(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range p.VMRuntimeClasses {
		if c == name || (strings.HasSuffix(c, "*") && strings.HasPrefix(name, strings.TrimSuffix(c, "*"))) {
			return true
		}
	}
	return false
}

// WithDefaults fills every unset field with its strict default.
func (p Policy) WithDefaults() Policy {
	if p.DefaultMode == "" {
		p.DefaultMode = ModeEnforceRedirect
	}
	if len(p.Backends) == 0 {
		p.Backends = append([]string(nil), redirect.AllBackends...)
	}
	if len(p.SidecarContainerNames) == 0 {
		p.SidecarContainerNames = []string{DefaultSidecarContainerName}
	}
	if len(p.VMRuntimeClasses) == 0 {
		p.VMRuntimeClasses = []string{DefaultVMRuntimeClasses}
	}
	if p.NetfilterRuntimeHandlers == nil {
		p.NetfilterRuntimeHandlers = append([]string(nil), DefaultNetfilterRuntimeHandlers...)
	}
	if p.ProxyUID == 0 {
		p.ProxyUID = redirect.DefaultProxyUID
	}
	if p.OutboundPort == 0 {
		p.OutboundPort = redirect.DefaultOutboundPort
	}
	if p.InboundPort == 0 {
		p.InboundPort = redirect.DefaultInboundPort
	}
	if p.Mark == 0 {
		p.Mark = redirect.DefaultMark
	}
	if p.MarkMask == 0 {
		p.MarkMask = redirect.DefaultMarkMask
	}
	if p.ExcludeNamespaces == nil {
		p.ExcludeNamespaces = append([]string(nil), DefaultExcludeNamespaces...)
	}
	return p
}

// Validate checks a defaulted policy, naming the field and the fix.
func (p Policy) Validate() error {
	if _, err := ParseMode(string(p.DefaultMode)); err != nil {
		return fmt.Errorf("field defaultMode: %w", err)
	}
	if p.AllowCooperative && p.AcknowledgeCooperativeRisks != SecurityModelVersion {
		if p.AcknowledgeCooperativeRisks == "" {
			return fmt.Errorf("field allowCooperative: cooperative mode is weaker than enforce-redirect; read %s and set acknowledgeCooperativeRisks: %q to allow it", SecurityModelDoc, SecurityModelVersion)
		}
		if slices.Contains(PreviousSecurityModelVersions, p.AcknowledgeCooperativeRisks) {
			return fmt.Errorf("field acknowledgeCooperativeRisks: %q acknowledges an older %s; read what changed (section \"Changes from %s\") and set acknowledgeCooperativeRisks: %q", p.AcknowledgeCooperativeRisks, SecurityModelDoc, p.AcknowledgeCooperativeRisks, SecurityModelVersion)
		}
		return fmt.Errorf("field acknowledgeCooperativeRisks: %q is stale or wrong; read the current %s and set acknowledgeCooperativeRisks: %q", p.AcknowledgeCooperativeRisks, SecurityModelDoc, SecurityModelVersion)
	}
	if !p.AllowCooperative && p.DefaultMode == ModeNone {
		return fmt.Errorf("field defaultMode: %q needs allowCooperative: true (with acknowledgeCooperativeRisks: %q); see %s", ModeNone, SecurityModelVersion, SecurityModelDoc)
	}
	if len(p.Backends) == 0 {
		return fmt.Errorf("field backends: list at least one of %v", redirect.AllBackends)
	}
	seen := map[string]bool{}
	for _, b := range p.Backends {
		if !isBackend(b) {
			return fmt.Errorf("field backends: unknown backend %q: allowed values are %v", b, redirect.AllBackends)
		}
		if seen[b] {
			return fmt.Errorf("field backends: %q listed twice", b)
		}
		seen[b] = true
	}
	for _, c := range p.VMRuntimeClasses {
		if c == "" || c == "*" {
			return fmt.Errorf("field vmRuntimeClasses: %q: list RuntimeClass names (a trailing * is a prefix, default %q); \"*\" would mark every pod as a VM sandbox", c, DefaultVMRuntimeClasses)
		}
	}
	if len(p.NetfilterRuntimeHandlers) == 0 {
		return fmt.Errorf("field netfilterRuntimeHandlers: empty list: no pod could get rules; remove the key for the default %q, or list the handlers whose pods share the pod netns (runc, crun)", DefaultNetfilterRuntimeHandlers)
	}
	for _, h := range p.NetfilterRuntimeHandlers {
		if h == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(h); len(errs) > 0 {
			return fmt.Errorf("field netfilterRuntimeHandlers: %q is not a runtime handler name (%s); list handler names as in RuntimeClass.handler, e.g. runc, crun, and \"\" for an unknown node default", h, strings.Join(errs, "; "))
		}
	}
	for _, n := range p.SidecarContainerNames {
		if n == "" {
			return fmt.Errorf("field sidecarContainerNames: empty name; list the sidecar's container names (default %q)", DefaultSidecarContainerName)
		}
	}
	for _, n := range p.ExcludeNamespaces {
		if errs := validation.IsDNS1123Label(n); len(errs) > 0 {
			return fmt.Errorf("field excludeNamespaces: %q is not a namespace name: %s", n, strings.Join(errs, "; "))
		}
	}
	for _, c := range p.ExcludeOutboundCIDRs {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("field excludeOutboundCIDRs: %q is not a CIDR (e.g. 10.0.0.0/8): %w", c, err)
		}
		if pfx.Bits() == 0 {
			return fmt.Errorf("field excludeOutboundCIDRs: %q excludes every destination: this would turn enforcement off for every pod while reporting enforce-redirect; use allowCooperative/auto instead, or list narrower CIDRs", c)
		}
	}
	var excluded []netip.Prefix
	for _, c := range p.ExcludeOutboundCIDRs {
		if pfx, err := netip.ParsePrefix(c); err == nil {
			excluded = append(excluded, pfx)
		}
	}
	if f := redirect.CoveredFamily(excluded); f != "" {
		return fmt.Errorf("field excludeOutboundCIDRs: %v together cover every %s destination: this would turn enforcement off for %s while reporting enforce-redirect; use allowCooperative/auto instead, or list narrower CIDRs", p.ExcludeOutboundCIDRs, f, f)
	}
	for _, c := range p.AllowedPodNameservers {
		pfx, err := netip.ParsePrefix(c)
		if err != nil {
			return fmt.Errorf("field allowedPodNameservers: %q is not a CIDR (e.g. 10.0.0.53/32): %w", c, err)
		}
		if pfx.Bits() == 0 {
			return fmt.Errorf("field allowedPodNameservers: %q allows every address: any pod could then name any server in dnsConfig.nameservers and get direct, unproxied DNS (TCP+UDP 53) to it; list the resolvers' own addresses or narrow CIDRs", c)
		}
	}
	for _, d := range p.ClusterDNS {
		a, err := netip.ParseAddr(d)
		if err != nil {
			return fmt.Errorf("field clusterDNS: %q is not an IP address: %w", d, err)
		}
		if a.Zone() != "" {
			return fmt.Errorf("field clusterDNS: %q has an IPv6 zone (%%%s); cluster DNS service IPs are plain addresses: remove the zone", d, a.Zone())
		}
	}
	// The remaining knobs are validated by the rule model itself.
	spec := p.RedirectSpec(redirect.IPv4)
	if err := spec.Validate(); err != nil {
		return err // a *redirect.FieldError: "invalid <field> <value>: <fix>"
	}
	return nil
}

func isBackend(b string) bool {
	for _, x := range redirect.AllBackends {
		if x == b {
			return true
		}
	}
	return false
}

// RedirectSpec renders the policy's knobs into a rule model for the given
// families; the caller adds the pod's resolvers.
func (p Policy) RedirectSpec(families ...redirect.Family) redirect.Spec {
	s := redirect.DefaultSpec(families...)
	s.ProxyUID = p.ProxyUID
	s.OutboundPort = p.OutboundPort
	s.Mark = p.Mark
	s.MarkMask = p.MarkMask
	s.MarkBypass = p.MarkBypass
	s.InboundEnabled = p.InboundRedirect
	s.InboundPort = p.InboundPort
	s.ExcludeInboundPorts = append([]uint16(nil), p.ExcludeInboundPorts...)
	s.ExcludeOutboundPorts = append([]uint16(nil), p.ExcludeOutboundPorts...)
	for _, c := range p.ExcludeOutboundCIDRs {
		if pfx, err := netip.ParsePrefix(c); err == nil {
			s.ExcludeOutboundCIDRs = append(s.ExcludeOutboundCIDRs, pfx)
		}
	}
	return s
}

// Agent is the node agent's configuration file (ConfigMap authbridge-node-config).
type Agent struct {
	Policy `json:",inline"`

	// CNIBinDir and CNIConfDir are the host paths as mounted in the agent.
	CNIBinDir  string `json:"cniBinDir,omitempty"`
	CNIConfDir string `json:"cniConfDir,omitempty"`
	// HostCNIConfDir is the conf dir as the plugin (on the host) sees it.
	// Nothing written into the conflist depends on it any more (the
	// plugin's kubeconfig moved to CredentialDir); kept for the configs
	// that set it.
	HostCNIConfDir string `json:"hostCNIConfDir,omitempty"`
	// StateDir holds the node state file and the plugin events socket.
	StateDir string `json:"stateDir,omitempty"`
	// CredentialDir holds the plugin's kubeconfig (a Node-bound token),
	// outside the CNI conf dir; the same path in the agent and on the host.
	CredentialDir string `json:"credentialDir,omitempty"`
	// ProbeInterval is how often the capability probe reruns (e.g. "5m").
	ProbeInterval Duration `json:"probeInterval,omitempty"`
	// VerifyInterval is how often the agent reads every enforced pod's
	// rules back from the kernel and re-applies drifted ones (e.g. "30s").
	VerifyInterval Duration `json:"verifyInterval,omitempty"`
	// RemovedKeepEntryOnUpgrade is the removed keepEntryOnUpgrade key. The
	// agent now never uninstalls on SIGTERM unless its DaemonSet is gone or
	// no longer selects the node, so the key has no effect; it is still
	// parsed (and logged at WARN by the agent, see Deprecations) so an old
	// ConfigMap does not stop a rollout at its first node.
	RemovedKeepEntryOnUpgrade *bool `json:"keepEntryOnUpgrade,omitempty"`
	// RepairPods deletes pods that started without rules (off by default).
	RepairPods bool `json:"repairPods,omitempty"`
	// CNIInstallMode is how the plugin reaches pods: chained last in the
	// primary network's conflist, or as the Multus attachment
	// (NetworkAttachmentDefinition) pods request; auto picks by what the
	// conf dir holds (install.ResolveMode).
	CNIInstallMode InstallMode `json:"cniInstallMode,omitempty"`
	// MetricsAddr is the listen address for /metrics, /healthz, /readyz.
	MetricsAddr string `json:"metricsAddr,omitempty"`
	// LogLevel: debug, info, warn, error.
	LogLevel string `json:"logLevel,omitempty"`
}

// InstallMode is how the agent puts the plugin in pods' path.
type InstallMode string

const (
	// InstallAuto: multus-attachment when the runtime's default network
	// (the lexically first config of the conf dir) is Multus, else chain.
	InstallAuto InstallMode = "auto"
	// InstallChain: the entry goes last in the primary network's conflist
	// (a single .conf is converted), kept there by the keeper.
	InstallChain InstallMode = "chain"
	// InstallMultusAttachment: the conf dir is not touched; the plugin
	// runs as the delegate of the NetworkAttachmentDefinition
	// authbridge-cni, which AuthBridge pods name in their
	// k8s.v1.cni.cncf.io/networks annotation; the agent writes the entry
	// the NAD's config points to (entryFile).
	InstallMultusAttachment InstallMode = "multus-attachment"
)

// InstallModes lists the allowed values, in the order docs and errors show them.
var InstallModes = []InstallMode{InstallAuto, InstallChain, InstallMultusAttachment}

// Deprecations lists keys that are accepted but have no effect, with the
// reason, for a WARN log at start.
func (a Agent) Deprecations() []string {
	var d []string
	if a.RemovedKeepEntryOnUpgrade != nil {
		d = append(d, "keepEntryOnUpgrade is removed and ignored: the agent keeps the plugin installed across restarts and upgrades and uninstalls only when its DaemonSet is deleted or no longer selects the node (or on node-agent uninstall); remove the key (see docs/operations.md, Upgrade)")
	}
	return d
}

// Duration is a time.Duration written as "5m" in YAML/JSON.
type Duration struct{ time.Duration }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON returns *json.UnmarshalTypeError on bad input because
// encoding/json adds the field's name to that type only (e.g.
// "Agent.probeInterval"); any other error would not name the field.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return &json.UnmarshalTypeError{Value: string(b) + ` (durations are strings such as "5m")`, Type: reflect.TypeFor[Duration]()}
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return &json.UnmarshalTypeError{Value: strconv.Quote(s) + ` (` + err.Error() + `; durations look like "5m")`, Type: reflect.TypeFor[Duration]()}
	}
	d.Duration = v
	return nil
}

// Agent defaults.
const (
	DefaultCNIBinDir     = "/host/opt/cni/bin"
	DefaultCNIConfDir    = "/host/etc/cni/net.d"
	DefaultHostConfDir   = "/etc/cni/net.d"
	DefaultStateDir      = "/var/run/authbridge"
	DefaultCredentialDir = "/var/lib/authbridge"
	DefaultProbeInterval = 5 * time.Minute
	// DefaultVerifyInterval bounds how long drifted rules (a flushed
	// table, a moved jump) go unnoticed.
	DefaultVerifyInterval = 30 * time.Second
	// MinVerifyInterval keeps the drift check's cost bounded (one Verify
	// per enforced pod per pass).
	MinVerifyInterval  = 5 * time.Second
	DefaultMetricsAddr = ":9860"
)

// WithDefaults fills unset fields.
func (a Agent) WithDefaults() Agent {
	a.Policy = a.Policy.WithDefaults()
	if a.CNIBinDir == "" {
		a.CNIBinDir = DefaultCNIBinDir
	}
	if a.CNIConfDir == "" {
		a.CNIConfDir = DefaultCNIConfDir
	}
	if a.HostCNIConfDir == "" {
		a.HostCNIConfDir = DefaultHostConfDir
	}
	if a.StateDir == "" {
		a.StateDir = DefaultStateDir
	}
	if a.CredentialDir == "" {
		a.CredentialDir = DefaultCredentialDir
	}
	if a.ProbeInterval.Duration == 0 {
		a.ProbeInterval.Duration = DefaultProbeInterval
	}
	if a.VerifyInterval.Duration == 0 {
		a.VerifyInterval.Duration = DefaultVerifyInterval
	}
	if a.MetricsAddr == "" {
		a.MetricsAddr = DefaultMetricsAddr
	}
	if a.LogLevel == "" {
		a.LogLevel = "info"
	}
	if a.CNIInstallMode == "" {
		a.CNIInstallMode = InstallAuto
	}
	return a
}

// Validate checks a defaulted agent config.
func (a Agent) Validate() error {
	if err := a.Policy.Validate(); err != nil {
		return err
	}
	if a.ProbeInterval.Duration < 10*time.Second {
		return fmt.Errorf("field probeInterval: %s is too short; use at least 10s (default %s)", a.ProbeInterval, DefaultProbeInterval)
	}
	if a.VerifyInterval.Duration < MinVerifyInterval {
		return fmt.Errorf("field verifyInterval: %s is too short; use at least %s (default %s): each pass reads every enforced pod's rules back from the kernel", a.VerifyInterval, MinVerifyInterval, DefaultVerifyInterval)
	}
	if !slices.Contains(InstallModes, a.CNIInstallMode) {
		return fmt.Errorf("field cniInstallMode: %q: allowed values are %q (pick by what the CNI conf dir holds), %q (entry last in the primary conflist), %q (Multus NetworkAttachmentDefinition authbridge-cni)", a.CNIInstallMode, InstallAuto, InstallChain, InstallMultusAttachment)
	}
	switch a.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("field logLevel: %q: allowed values are debug, info, warn, error", a.LogLevel)
	}
	for name, v := range map[string]string{"cniBinDir": a.CNIBinDir, "cniConfDir": a.CNIConfDir, "hostCNIConfDir": a.HostCNIConfDir, "stateDir": a.StateDir, "credentialDir": a.CredentialDir} {
		if v == "" || v[0] != '/' {
			return fmt.Errorf("field %s: %q must be an absolute path", name, v)
		}
	}
	return nil
}

// ParseAgent decodes YAML or JSON strictly (unknown keys are refused),
// applies defaults and validates.
func ParseAgent(data []byte) (Agent, error) {
	var a Agent
	if len(bytes.TrimSpace(data)) > 0 {
		if err := checkKeyCase(data); err != nil {
			return Agent{}, fmt.Errorf("agent config: %w", err)
		}
		if err := yaml.UnmarshalStrict(data, &a); err != nil {
			return Agent{}, fmt.Errorf("agent config: %w (check the key names against the configuration table in README.md)", err)
		}
		if j, err := yaml.YAMLToJSON(data); err == nil {
			var raw map[string]json.RawMessage
			if json.Unmarshal(j, &raw) == nil {
				if err := RefuseExplicitZeros(raw); err != nil {
					return Agent{}, fmt.Errorf("agent config: %w", err)
				}
			}
		}
	}
	a = a.WithDefaults()
	if err := a.Validate(); err != nil {
		return Agent{}, fmt.Errorf("agent config: %w", err)
	}
	return a, nil
}

// zeroKeys are the keys whose zero value WithDefaults would silently replace
// by the default; an explicit zero is a mistake (UID 0 is root, port 0 is no
// listener, mark 0 matches nothing), so it is refused rather than "fixed".
var zeroKeys = []struct{ key, why string }{
	{"proxyUID", fmt.Sprintf("UID 0 is root, and the proxy's traffic is recognised by its UID; remove the key for the default %d or set the sidecar's non-root UID", redirect.DefaultProxyUID)},
	{"outboundPort", fmt.Sprintf("port 0 is not a listener; remove the key for the default %d or set the proxy's transparent outbound port", redirect.DefaultOutboundPort)},
	{"inboundPort", fmt.Sprintf("port 0 is not a listener; remove the key for the default %d or set the proxy's inbound port", redirect.DefaultInboundPort)},
	{"mark", fmt.Sprintf("mark 0 is what unmarked packets carry; remove the key for the default %#x or set the proxy's SO_MARK", redirect.DefaultMark)},
	{"markMask", fmt.Sprintf("a zero mask matches no bit; remove the key for the default %#x", redirect.DefaultMarkMask)},
	{"probeInterval", fmt.Sprintf("0s would never re-probe; remove the key for the default %s or use at least 10s", DefaultProbeInterval)},
	{"verifyInterval", fmt.Sprintf("0s would never check the pods' rules for drift; remove the key for the default %s or use at least %s", DefaultVerifyInterval, MinVerifyInterval)},
}

// RefuseExplicitZeros refuses keys present in a raw config object with a
// zero (or null) value that would otherwise be replaced by the default,
// naming the field and the fix. Keys absent from raw are fine (defaulted).
func RefuseExplicitZeros(raw map[string]json.RawMessage) error {
	for _, z := range zeroKeys {
		v, ok := raw[z.key]
		if !ok {
			continue
		}
		t := strings.TrimSpace(string(v))
		zero := t == "null"
		if !zero && (z.key == "probeInterval" || z.key == "verifyInterval") {
			var d Duration
			zero = d.UnmarshalJSON(v) == nil && d.Duration == 0
		} else if !zero {
			var n json.Number
			if json.Unmarshal(v, &n) == nil {
				f, err := n.Float64()
				zero = err == nil && f == 0
			}
		}
		if zero {
			return fmt.Errorf("field %s: explicit %s is not allowed (it is not \"unset\"): %s", z.key, t, z.why)
		}
	}
	return nil
}

// checkKeyCase refuses keys that differ from a known key only in case:
// encoding/json matches keys case-insensitively even with unknown fields
// disallowed, so "allowcooperative" would otherwise be taken silently.
func checkKeyCase(data []byte) error {
	j, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil // the strict decode reports bad YAML
	}
	if k := UnknownKey(j, reflect.TypeFor[Agent]()); k != "" {
		return fmt.Errorf("unknown field %q (keys are case-sensitive; check the key names against the configuration table in README.md)", k)
	}
	return nil
}

// UnknownKey returns the first (in sorted order) top-level key of the JSON
// object obj that is not exactly a JSON key of struct type t, or "" when
// every key is known or obj is not an object (the strict decode reports
// that). Strict parsers call it before decoding: encoding/json matches keys
// case-insensitively even with unknown fields disallowed.
func UnknownKey(obj []byte, t reflect.Type) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(obj, &m) != nil {
		return ""
	}
	known := map[string]bool{}
	JSONKeys(t, known)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !known[k] {
			return k
		}
	}
	return ""
}

// JSONKeys collects the JSON key names of a struct, descending into embedded
// (inline) structs; the strict parsers here and in internal/cni use it.
func JSONKeys(t reflect.Type, into map[string]bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous && name == "" {
			JSONKeys(f.Type, into)
			continue
		}
		if name == "" {
			name = f.Name
		}
		if name != "-" && f.IsExported() {
			into[name] = true
		}
	}
}

// Weakenings lists the choices in a policy that weaken enforcement, for the
// WARN log and the authbridge_config_weakenings metric.
func (p Policy) Weakenings() []string {
	var w []string
	if p.AllowCooperative {
		w = append(w, "allowCooperative")
	}
	if p.DefaultMode != ModeEnforceRedirect {
		w = append(w, "defaultMode="+string(p.DefaultMode))
	}
	if len(p.ExcludeOutboundCIDRs) > 0 {
		w = append(w, "excludeOutboundCIDRs")
	}
	if len(p.ExcludeOutboundPorts) > 0 {
		w = append(w, "excludeOutboundPorts")
	}
	if len(p.AllowedPodNameservers) > 0 {
		w = append(w, "allowedPodNameservers")
	}
	if p.MarkBypass {
		w = append(w, "markBypass")
	}
	return w
}
