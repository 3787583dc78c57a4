package podinfo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kagenti/authbridge-node/pkg/config"
)

// DefaultTimeout bounds each API request: a CNI ADD must not hang pod
// creation when the API server is away.
const DefaultTimeout = 3 * time.Second

// DefaultBudget bounds all attempts of one read, retries included, when
// the caller's context has no earlier deadline.
const DefaultBudget = 10 * time.Second

// Retry backoff between attempts of one read: 100 ms doubling to 1 s.
const (
	retryFirst = 100 * time.Millisecond
	retryMax   = time.Second
)

// KubeSource reads pods and namespace ConfigMaps with client-go.
type KubeSource struct {
	client  kubernetes.Interface
	host    string
	timeout time.Duration
}

// NewKubeSource builds a client from a kubeconfig file (the one the node
// agent writes next to the conflist). timeout <= 0 means DefaultTimeout.
func NewKubeSource(kubeconfigPath string, timeout time.Duration) (*KubeSource, error) {
	if kubeconfigPath == "" {
		return nil, errors.New("field kubeconfig: empty; set the path of the kubeconfig the node agent writes for the plugin")
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfigPath)
	if err != nil {
		return nil, fmt.Errorf("field kubeconfig: cannot load %s: %w (the node agent writes it; is the agent running on this node?)", kubeconfigPath, err)
	}
	cfg.Timeout = timeout
	cfg.UserAgent = "authbridge-cni"
	// One process per pod: no client-side throttling worth having.
	cfg.QPS, cfg.Burst = 50, 100
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("field kubeconfig: %s: %w", kubeconfigPath, err)
	}
	return &KubeSource{client: cs, host: cfg.Host, timeout: timeout}, nil
}

// NewClientSource reads through an existing client (the node agent's own,
// for in-place repair); host names the server in errors.
func NewClientSource(cs kubernetes.Interface, host string, timeout time.Duration) *KubeSource {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	return &KubeSource{client: cs, host: host, timeout: timeout}
}

// Host is the API server URL from the kubeconfig.
func (k *KubeSource) Host() string { return k.host }

// GetPod implements Source.
func (k *KubeSource) GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := k.retry(ctx, func(ctx context.Context) (err error) {
		pod, err = k.client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		return err
	})
	if err != nil {
		return nil, k.explain(err, fmt.Sprintf("pod %s/%s", namespace, name))
	}
	return pod, nil
}

// retry runs one read until it succeeds, fails for good, or the budget
// (the caller's deadline, at most DefaultBudget) is spent: one API hiccup
// must not fail a pod's sandbox. Each attempt is bounded by k.timeout.
func (k *KubeSource) retry(ctx context.Context, read func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultBudget)
	defer cancel()
	wait := retryFirst
	attempts := 0
	for {
		attempts++
		actx, acancel := context.WithTimeout(ctx, k.timeout)
		err := read(actx)
		acancel()
		if err == nil || !transient(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return &retriedError{err: err, attempts: attempts}
		case <-t.C:
		}
		wait = min(2*wait, retryMax)
	}
}

// retriedError keeps the last attempt's error (for explain) and says how
// many attempts were made.
type retriedError struct {
	err      error
	attempts int
}

func (e *retriedError) Error() string {
	return fmt.Sprintf("%v (%d attempts)", e.err, e.attempts)
}
func (e *retriedError) Unwrap() error { return e.err }

// transient: worth another attempt within the budget. NotFound, Forbidden,
// Unauthorized and malformed answers are not.
func transient(err error) bool {
	return isUnreachable(err) || apierrors.IsTooManyRequests(err) || apierrors.IsInternalError(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err)
}

// GetNamespaceConfig implements Source.
func (k *KubeSource) GetNamespaceConfig(ctx context.Context, namespace string) (NamespaceConfig, error) {
	var cm *corev1.ConfigMap
	err := k.retry(ctx, func(ctx context.Context) (err error) {
		cm, err = k.client.CoreV1().ConfigMaps(namespace).Get(ctx, config.NamespaceConfigMap, metav1.GetOptions{})
		return err
	})
	if apierrors.IsNotFound(err) {
		return NamespaceConfig{}, nil
	}
	if err != nil {
		return NamespaceConfig{}, k.explain(err, fmt.Sprintf("ConfigMap %s/%s", namespace, config.NamespaceConfigMap))
	}
	data, ok := cm.Data[config.NamespaceConfigMapKey]
	if !ok {
		return NamespaceConfig{}, nil
	}
	return ParseNamespaceConfig(namespace, []byte(data))
}

// GetRuntimeClassHandler implements Source.
func (k *KubeSource) GetRuntimeClassHandler(ctx context.Context, name string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, k.timeout)
	defer cancel()
	rc, err := k.client.NodeV1().RuntimeClasses().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return "", k.explain(err, fmt.Sprintf("RuntimeClass %s", name))
	}
	return rc.Handler, nil
}

// explain turns client-go errors into messages that say what failed and
// what it means for the pod.
func (k *KubeSource) explain(err error, what string) error {
	const consequence = "the pod is not started because its enforcement mode is unknown"
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Errorf("%s not found in the Kubernetes API server at %s: %w; %s", what, k.host, err, consequence)
	case apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err):
		return fmt.Errorf("the Kubernetes API server at %s refused to let the plugin read %s: %w; check the plugin's own RBAC (ClusterRole authbridge-cni: get on pods, on ConfigMaps named authbridge-runtime-config and on runtimeclasses) and its Node-bound credential, which the node agent refreshes; %s", k.host, what, err, consequence)
	case isUnreachable(err):
		return fmt.Errorf("cannot reach the Kubernetes API server at %s to read %s: %w; %s", k.host, what, err, consequence)
	default:
		return fmt.Errorf("reading %s from the Kubernetes API server at %s failed: %w; %s", what, k.host, err, consequence)
	}
}

func isUnreachable(err error) bool {
	var ue *url.Error
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.As(err, &oe) ||
		errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
}
