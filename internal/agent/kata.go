package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kagenti/authbridge-node/internal/kata"
)

// Event reasons of the Kata extension (on the Node).
const (
	ReasonKataPolicyInstalled = "KataPolicyInstalled"
	ReasonKataPolicyPartial   = "KataPolicyPartial"
	ReasonKataPolicyMissing   = "KataPolicyNotInstalled"
	// ReasonKataPolicyUnenforced: the guests' agents are built without the
	// policy feature; no policy is enforced whatever the guest carries.
	ReasonKataPolicyUnenforced = "KataPolicyUnenforced"
)

// DefaultKataRecheckInterval is how often KataExtension re-runs the
// (idempotent) install, so a node where kata-deploy installs or upgrades
// Kata after the agent started gets the policy without an agent restart.
const DefaultKataRecheckInterval = 2 * time.Minute

// KataExtension installs the restrictive Kata agent policy on Kata nodes
// and publishes kata.LabelKataPolicy / kata.AnnotationKataPolicySHA256; on
// other nodes it removes them. It re-checks every RecheckInterval (Watch).
//
// Stopping the agent never removes the policy (Uninstall is a no-op): a
// DaemonSet rollout or an agent crash must not open a window in which new
// Kata guests boot the allow-all default policy. Removing it is an explicit
// action, `node-agent kata uninstall --host-root /host` (which also removes
// the Node label and annotation), see docs/kata-secure-by-default.md.
type KataExtension struct {
	Installer *kata.NodeInstaller
	// RecheckInterval is DefaultKataRecheckInterval when zero.
	RecheckInterval time.Duration
}

// ExtensionWatcher is a NodeExtension that keeps checking the node after
// Install; the agent runs Watch in its own goroutine until ctx ends.
type ExtensionWatcher interface {
	Watch(ctx context.Context, host ExtensionHost)
}

// ExtensionHost is what the agent offers a watching extension.
type ExtensionHost interface {
	// PublishMarks sets ("" removes) labels and annotations on the Node.
	PublishMarks(NodeMarks)
	// NodeEvent records a core/v1 Event on the Node.
	NodeEvent(ctx context.Context, eventType, reason, message string)
	// Logger is the agent's logger.
	Logger() *slog.Logger
}

// startWatch runs ext's Watch if it has one (called by installExtension).
func (a *Agent) startWatch(ctx context.Context, ext NodeExtension) {
	if w, ok := ext.(ExtensionWatcher); ok {
		go w.Watch(ctx, agentHost{a})
	}
}

type agentHost struct{ a *Agent }

func (h agentHost) PublishMarks(m NodeMarks) {
	h.a.mu.Lock()
	if h.a.desired == nil {
		h.a.desired = &nodeDesired{}
	}
	h.a.desired.addMarks(m)
	h.a.mu.Unlock()
	h.a.kickNode()
}

func (h agentHost) NodeEvent(ctx context.Context, typ, reason, msg string) {
	ref := corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: h.a.o.NodeName}
	if n, err := h.a.o.Client.CoreV1().Nodes().Get(ctx, h.a.o.NodeName, metav1.GetOptions{}); err == nil {
		ref.UID = n.UID
	}
	h.a.emit(ctx, ref, typ, reason, msg)
}

func (h agentHost) Logger() *slog.Logger { return h.a.log }

// Weakenings are the installer's weakening options (agent.New logs them at
// WARN and counts them in authbridge_config_weakenings).
func (k KataExtension) Weakenings() []string { return k.Installer.Weakenings() }

// Name implements NodeExtension.
func (k KataExtension) Name() string { return "kata-policy" }

func kataMarks(label, sha string) NodeMarks {
	return NodeMarks{
		Labels:      map[string]string{kata.LabelKataPolicy: label},
		Annotations: map[string]string{kata.AnnotationKataPolicySHA256: sha},
	}
}

// kataOutcome is one check's result, compared between checks.
type kataOutcome struct {
	label, sha string
	summary    string // per-configuration status, for the Event
	err        error
}

func (o kataOutcome) same(p kataOutcome) bool {
	return o.label == p.label && o.sha == p.sha && o.summary == p.summary
}

// check detects and (idempotently) installs; not a Kata node (peer-pods
// workers included) yields empty marks and no error.
func (k KataExtension) check(ctx context.Context) kataOutcome {
	isKata, _, err := k.Installer.Detect()
	if err != nil {
		return kataOutcome{err: err}
	}
	if !isKata {
		return kataOutcome{}
	}
	res, err := k.Installer.Install(ctx)
	if err != nil && !errors.Is(err, kata.ErrNoGuestChanged) {
		return kataOutcome{err: err}
	}
	o := kataOutcome{label: res.Label(), sha: res.PublishedSHA256(), err: err}
	var parts []string
	for _, c := range res.Configs {
		s := fmt.Sprintf("%s [hypervisor.%s]: %s", c.Config, c.Hypervisor, c.Status)
		if c.Status == kata.StatusUnchanged {
			s = fmt.Sprintf("%s [hypervisor.%s]: %s", c.Config, c.Hypervisor, kata.StatusInstalled)
		}
		if c.Reason != "" {
			s += " (" + c.Reason + ")"
		}
		parts = append(parts, s)
	}
	o.summary = strings.Join(parts, "; ")
	return o
}

// Install implements NodeExtension.
func (k KataExtension) Install(ctx context.Context) (NodeMarks, error) {
	o := k.check(ctx)
	return kataMarks(o.label, o.sha), o.err
}

// Watch implements ExtensionWatcher: it reports the first result as an
// Event, then re-runs the idempotent install every RecheckInterval and
// republishes the label and annotation (with an Event) when they change.
func (k KataExtension) Watch(ctx context.Context, host ExtensionHost) {
	log := host.Logger().With("extension", k.Name())
	interval := k.RecheckInterval
	if interval <= 0 {
		interval = DefaultKataRecheckInterval
	}
	defer log.Info("kata policy re-check stopped")
	t := time.NewTicker(interval)
	defer t.Stop()
	var last *kataOutcome
	for {
		o := k.check(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case o.err != nil && o.label == "" && !errors.Is(o.err, kata.ErrNoGuestChanged):
			// Transient or unexpected: keep what is published.
			log.Error("kata policy check failed; keeping the published label", "err", o.err)
		case last == nil || !o.same(*last):
			host.PublishMarks(kataMarks(o.label, o.sha))
			k.report(ctx, host, log, o, last == nil)
			last = &o
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (k KataExtension) report(ctx context.Context, host ExtensionHost, log *slog.Logger, o kataOutcome, first bool) {
	switch o.label {
	case kata.LabelValueRestrictive:
		log.Info("kata policy in place on every Kata configuration", "sha256", o.sha, "configs", o.summary)
		host.NodeEvent(ctx, corev1.EventTypeNormal, ReasonKataPolicyInstalled,
			fmt.Sprintf("restrictive Kata agent policy (sha256 %s) installed for every Kata configuration: %s", o.sha, o.summary))
	case kata.LabelValuePartial:
		log.Warn("kata policy installed for some Kata configurations only", "sha256", o.sha, "configs", o.summary)
		host.NodeEvent(ctx, corev1.EventTypeWarning, ReasonKataPolicyPartial,
			fmt.Sprintf("restrictive Kata agent policy installed for some Kata configurations only; guests of the others boot without it: %s", o.summary))
	case kata.LabelValueUnenforced:
		log.Warn("kata guests on this node enforce no agent policy: their kata-agent lacks the policy feature", "configs", o.summary)
		host.NodeEvent(ctx, corev1.EventTypeWarning, ReasonKataPolicyUnenforced,
			fmt.Sprintf("Kata guests on this node enforce no agent policy (kata-agent built without AGENT_POLICY=yes); nothing was installed: %s", o.summary))
	default:
		if o.err == nil {
			if !first {
				log.Info("no local Kata configuration any more; kata-policy label removed")
			}
			return // not a Kata node: nothing to report
		}
		log.Warn("kata policy not installed on this Kata node", "err", o.err)
		host.NodeEvent(ctx, corev1.EventTypeWarning, ReasonKataPolicyMissing,
			fmt.Sprintf("Kata guests on this node boot without the restrictive policy: %v", o.err))
	}
}

// Uninstall implements NodeExtension and deliberately does nothing: the
// agent calls it on every SIGTERM (rollouts, node drains), and restoring
// the allow-all initrd then would let Kata guests started before the next
// agent is up run without policy. The installed policy and the Node label
// stay (they remain true); `node-agent kata uninstall` removes both.
func (k KataExtension) Uninstall(ctx context.Context) error { return nil }
