package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/pkg/nodestate"
	"github.com/kagenti/authbridge-node/pkg/redirect"
)

// nodeDesired is what the agent wants on its Node.
type nodeDesired struct {
	probed      bool
	best        string
	state       nodestate.State
	families    []redirect.Family
	labels      map[string]string // "" removes
	annotations map[string]string // "" removes
}

func (d *nodeDesired) setProbe(best string, st nodestate.State, families []redirect.Family) {
	d.probed, d.best, d.state, d.families = true, best, st, families
}

func (d *nodeDesired) addMarks(m NodeMarks) {
	if d.labels == nil {
		d.labels, d.annotations = map[string]string{}, map[string]string{}
	}
	for k, v := range m.Labels {
		d.labels[k] = v
	}
	for k, v := range m.Annotations {
		d.annotations[k] = v
	}
}

func (d *nodeDesired) copy() nodeDesired {
	c := *d
	c.labels, c.annotations = map[string]string{}, map[string]string{}
	for k, v := range d.labels {
		c.labels[k] = v
	}
	for k, v := range d.annotations {
		c.annotations[k] = v
	}
	return c
}

func (a *Agent) kickNode() {
	select {
	case a.nodeKick <- struct{}{}:
	default:
	}
}

// nodeSyncLoop publishes the desired labels, retrying with backoff while
// the API server is down or refuses.
func (a *Agent) nodeSyncLoop(ctx context.Context) {
	delay := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.nodeKick:
		}
		for {
			a.mu.Lock()
			var d nodeDesired
			ok := a.desired != nil && a.desired.probed
			if ok {
				d = a.desired.copy()
			}
			a.mu.Unlock()
			if !ok {
				break
			}
			err := a.SyncNode(ctx, d.best, d.state, d.families, NodeMarks{Labels: d.labels, Annotations: d.annotations})
			if err == nil {
				delay = time.Second
				select {
				case a.nodeSynced <- struct{}{}:
				default:
				}
				break
			}
			if ctx.Err() != nil {
				return
			}
			a.metrics.NodeUpdateErrors.Inc()
			a.log.Warn("cannot update this Node's capability labels; retrying (the agent stays unready until it succeeds)", "retryIn", delay, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(delay):
			}
			delay = backoff(delay, a.o.APIRetryMax)
		}
	}
}

// SyncNode sets the capability labels and last-probe annotation on this
// agent's Node with a JSON merge patch (only the keys the agent owns), and
// emits an Event on the Node when the capability changed.
func (a *Agent) SyncNode(ctx context.Context, best string, st nodestate.State, families []redirect.Family, extra NodeMarks) error {
	nodes := a.o.Client.CoreV1().Nodes()
	node, err := nodes.Get(ctx, a.o.NodeName, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("get node %s: %w", a.o.NodeName, err)
	}
	capable := strconv.FormatBool(best != BackendNone)
	labels := map[string]any{LabelEgressRedirect: best, LabelEgressRedirectCapable: capable}
	annotations := map[string]any{AnnotationLastProbe: lastProbeJSON(best, st, families)}
	for k, v := range extra.Labels {
		labels[k] = nilIfEmpty(v)
	}
	for k, v := range extra.Annotations {
		annotations[k] = nilIfEmpty(v)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels, "annotations": annotations}})
	if _, err := nodes.Patch(ctx, a.o.NodeName, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: EventComponent}); err != nil {
		return fmt.Errorf("patch node %s labels: %w", a.o.NodeName, err)
	}
	old, had := node.Labels[LabelEgressRedirect]
	if !had || old != best {
		typ, msg := corev1.EventTypeNormal, ""
		from := old
		if !had {
			from = "unknown"
		}
		if best == BackendNone {
			typ = corev1.EventTypeWarning
			msg = fmt.Sprintf("egress redirect capability changed from %s to none: no redirect backend works on this node (%s); enforce-redirect pods will fail to start here", from, summarize(st.Results))
		} else {
			msg = fmt.Sprintf("egress redirect capability changed from %s to %s (%s)", from, best, summarize(st.Results))
		}
		a.log.Info("capability changed", "from", from, "to", best)
		a.emit(ctx, corev1.ObjectReference{Kind: "Node", APIVersion: "v1", Name: node.Name, UID: node.UID}, typ, ReasonCapabilityChanged, msg)
	}
	return nil
}

// removeNodeLabels deletes the capability labels (on uninstall).
func (a *Agent) removeNodeLabels(ctx context.Context) error {
	if err := RemoveNodeLabels(ctx, a.o.Client, a.o.NodeName); err != nil {
		return err
	}
	a.log.Info("capability labels removed from the Node")
	return nil
}

// RemoveNodeLabels deletes the capability labels from node (a node
// without the plugin cannot enforce).
func RemoveNodeLabels(ctx context.Context, client kubernetes.Interface, node string) error {
	if node == "" {
		return errors.New("node name is empty: set NODE_NAME or --node-name")
	}
	patch := []byte(`{"metadata":{"labels":{"` + LabelEgressRedirect + `":null,"` + LabelEgressRedirectCapable + `":null}}}`)
	if _, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: EventComponent}); err != nil {
		return fmt.Errorf("remove capability labels from node %s: %w", node, err)
	}
	return nil
}

func summarize(rs []nodestate.BackendResult) string {
	parts := make([]string, 0, len(rs))
	for _, r := range rs {
		if r.Works {
			parts = append(parts, r.Backend+": works")
		} else {
			e := r.Error
			if len(e) > 200 {
				e = e[:200] + "..."
			}
			parts = append(parts, r.Backend+": "+e)
		}
	}
	return strings.Join(parts, "; ")
}

func nilIfEmpty(v string) any {
	if v == "" {
		return nil
	}
	return v
}
