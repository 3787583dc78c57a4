package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	nodev1 "k8s.io/api/node/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/decision"
)

// DecisionCache is the agent's node-scoped view for the plugin's decision
// queries: the pods bound to this node (field selector spec.nodeName) and
// every namespace's authbridge-runtime-config ConfigMap (field selector
// metadata.name), kept by two informers. Once synced it answers without
// an API request, and keeps answering from what it has while the API
// server is away.
type DecisionCache struct {
	client kubernetes.Interface
	wait   time.Duration
	pods   cache.SharedIndexInformer
	cms    cache.SharedIndexInformer
	rcs    cache.SharedIndexInformer
	start  func(<-chan struct{})

	mu      sync.Mutex
	changed chan struct{} // closed (and replaced) on every pod add/update
}

// NewDecisionCache builds the informers for node; wait is how long an
// answer waits for a pod not yet in the cache (decision.DefaultWait if 0).
func NewDecisionCache(client kubernetes.Interface, node string, wait time.Duration) *DecisionCache {
	if wait <= 0 {
		wait = decision.DefaultWait
	}
	pf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "spec.nodeName=" + node
	}))
	cf := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = "metadata.name=" + config.NamespaceConfigMap
	}))
	rf := informers.NewSharedInformerFactory(client, 0)
	d := &DecisionCache{client: client, wait: wait, changed: make(chan struct{}),
		pods: pf.Core().V1().Pods().Informer(), cms: cf.Core().V1().ConfigMaps().Informer(),
		rcs: rf.Node().V1().RuntimeClasses().Informer()}
	// Only what a decision reads is kept: managed fields are the bulk of a
	// pod object and nobody here needs them.
	strip := func(obj any) (any, error) {
		if m, ok := obj.(metav1.Object); ok {
			m.SetManagedFields(nil)
		}
		return obj, nil
	}
	_ = d.pods.SetTransform(strip)
	_ = d.cms.SetTransform(strip)
	_ = d.rcs.SetTransform(strip)
	notify := func(any) {
		d.mu.Lock()
		close(d.changed)
		d.changed = make(chan struct{})
		d.mu.Unlock()
	}
	_, _ = d.pods.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: notify, UpdateFunc: func(_, n any) { notify(n) }})
	d.start = func(stop <-chan struct{}) { pf.Start(stop); cf.Start(stop); rf.Start(stop) }
	return d
}

// Start runs the informers until ctx ends.
func (d *DecisionCache) Start(ctx context.Context) { d.start(ctx.Done()) }

// Synced reports whether the informers have listed once.
func (d *DecisionCache) Synced() bool {
	return d.pods.HasSynced() && d.cms.HasSynced() && d.rcs.HasSynced()
}

// NodePods returns copies of this node's pods from the informer, and false
// until it has listed once (an empty store then means "not known yet", not
// "no pods": callers must not prune on it).
func (d *DecisionCache) NodePods() ([]corev1.Pod, bool) {
	if !d.pods.HasSynced() {
		return nil, false
	}
	objs := d.pods.GetStore().List()
	out := make([]corev1.Pod, 0, len(objs))
	for _, o := range objs {
		out = append(out, *o.(*corev1.Pod).DeepCopy())
	}
	return out, true
}

// Answer implements decision.Handler.
func (d *DecisionCache) Answer(ctx context.Context, req decision.Request) decision.Response {
	key := req.Namespace + "/" + req.Name
	deadline := time.NewTimer(d.wait)
	defer deadline.Stop()
	var pod *corev1.Pod
	source := decision.SourceCache
	for pod == nil {
		d.mu.Lock()
		changed := d.changed
		d.mu.Unlock()
		if obj, ok, _ := d.pods.GetStore().GetByKey(key); ok {
			if p := obj.(*corev1.Pod); req.UID == "" || string(p.UID) == req.UID {
				pod = p
				break
			}
		}
		select {
		case <-changed:
			continue
		case <-ctx.Done():
		case <-deadline.C:
		}
		// Not seen in time: read it (the watch may be behind, or the cache
		// not yet synced after an agent start).
		p, err := d.client.CoreV1().Pods(req.Namespace).Get(ctx, req.Name, metav1.GetOptions{})
		if err != nil {
			return decision.Response{Error: fmt.Sprintf("pod %s is not in the node agent's cache and reading it failed: %v", key, err)}
		}
		if req.UID != "" && string(p.UID) != req.UID {
			return decision.Response{Error: fmt.Sprintf("pod %s has UID %s in the API server, not %s", key, p.UID, req.UID)}
		}
		p.ManagedFields = nil
		pod, source = p, decision.SourceAPI
	}
	resp := decision.Response{Pod: pod, Source: source}
	cmKey := req.Namespace + "/" + config.NamespaceConfigMap
	var cm *corev1.ConfigMap
	if d.cms.HasSynced() {
		if obj, ok, _ := d.cms.GetStore().GetByKey(cmKey); ok {
			cm = obj.(*corev1.ConfigMap)
		}
	} else {
		c, err := d.client.CoreV1().ConfigMaps(req.Namespace).Get(ctx, config.NamespaceConfigMap, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return decision.Response{Error: fmt.Sprintf("ConfigMap %s: the node agent's cache has not synced and reading it failed: %v", cmKey, err)}
		default:
			cm = c
		}
	}
	if cm != nil {
		if v, ok := cm.Data[config.NamespaceConfigMapKey]; ok {
			resp.NamespaceConfig = &v
		}
	}
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		h, err := d.runtimeHandler(ctx, *rc)
		if err != nil {
			return decision.Response{Error: err.Error()}
		}
		resp.RuntimeHandler = &h
	}
	return resp
}

// runtimeHandler is the handler of RuntimeClass name, from the cache or,
// before it has synced, from the API server.
func (d *DecisionCache) runtimeHandler(ctx context.Context, name string) (string, error) {
	if d.rcs.HasSynced() {
		if obj, ok, _ := d.rcs.GetStore().GetByKey(name); ok {
			return obj.(*nodev1.RuntimeClass).Handler, nil
		}
	}
	rc, err := d.client.NodeV1().RuntimeClasses().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("RuntimeClass %s: not in the node agent's cache and reading it failed: %v", name, err)
	}
	return rc.Handler, nil
}

// DecisionSocketPath is the decision socket in the state dir.
func (a *Agent) DecisionSocketPath() string {
	return filepath.Join(a.cfg.StateDir, decision.SocketName)
}

// serveDecisions runs the node-scoped informers and answers the plugin on
// the decision socket until ctx ends. A failure here only costs the plugin
// its fast path: it asks the API server itself.
func (a *Agent) serveDecisions(ctx context.Context, dc *DecisionCache) {
	ln, err := decision.Listen(a.DecisionSocketPath())
	if err != nil {
		a.log.Error("decision socket unavailable: the plugin reads pods from the API server itself", "socket", a.DecisionSocketPath(), "err", err)
		return
	}
	handler := func(ctx context.Context, req decision.Request) decision.Response {
		resp := dc.Answer(ctx, req)
		src := resp.Source
		if resp.Error != "" {
			src = "error"
		}
		a.metrics.DecisionAnswers.WithLabelValues(src).Inc()
		return resp
	}
	if err := decision.Serve(ctx, ln, handler, decision.DefaultServeTimeout); err != nil {
		a.log.Error("decision socket stopped: the plugin reads pods from the API server itself", "err", err)
	}
}
