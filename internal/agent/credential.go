package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kagenti/authbridge-node/internal/install"
)

// The plugin's own identity: a ServiceAccount with the plugin's minimal
// RBAC (ClusterRole authbridge-cni: get pods, get the ConfigMaps named
// authbridge-runtime-config), distinct from the agent's.
const (
	PluginServiceAccount = "authbridge-cni"
	// PluginKubeconfigName is the plugin's kubeconfig in credentialDir.
	PluginKubeconfigName = "authbridge-cni.kubeconfig"
	// DefaultPluginTokenLifetime is the TokenRequest expiration asked for:
	// long enough to outlive an agent outage or a reboot, refreshed at
	// half of it.
	DefaultPluginTokenLifetime = 24 * time.Hour
)

// PluginCredential keeps the plugin's kubeconfig: a TokenRequest token of
// the plugin's ServiceAccount bound to this Node object (ServiceAccount
// token node binding, GA in Kubernetes 1.33, beta and on by default since
// 1.31), so it outlives agent pods (unlike the pod-bound projected token,
// which the API server rejects once the agent pod is deleted) and dies
// with the Node. It is written outside the CNI conf dir (no rewrite wakes
// the tools watching that dir), mode 0600 in a 0700 directory.
//
// On an API server without node binding the TokenRequest with a Node
// reference is refused; the credential then falls back to a token bound
// to nothing but its expiry (WARN at every refresh, UnboundFallback set):
// it also outlives agent pods, but deleting the Node does not revoke it;
// only its expiry or deleting the ServiceAccount does.
type PluginCredential struct {
	Client kubernetes.Interface
	// Namespace of the plugin's ServiceAccount (the agent's namespace).
	Namespace string
	// ServiceAccount defaults to PluginServiceAccount.
	ServiceAccount string
	NodeName       string
	// Path is the kubeconfig, e.g. /var/lib/authbridge/authbridge-cni.kubeconfig.
	Path string
	// Server is the API server URL as the plugin (on the host) reaches it.
	Server string
	// CAFile is the cluster CA (the agent's service-account ca.crt).
	CAFile string
	// Lifetime defaults to DefaultPluginTokenLifetime.
	Lifetime  time.Duration
	OnRefresh func()
	// OnRefreshError is called for each failed attempt
	// (authbridge_token_refresh_errors_total).
	OnRefreshError func(error)
	// OnUnbound is called when the API server refused node binding (a
	// weakening: authbridge_config_weakenings{setting="pluginTokenNotNodeBound"}).
	OnUnbound func()
	Logger    *slog.Logger

	// UnboundFallback is true once the API server refused node binding.
	UnboundFallback bool
}

func (c *PluginCredential) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

// Refresh requests a new token and writes the kubeconfig; it returns when
// the token expires.
func (c *PluginCredential) Refresh(ctx context.Context) (time.Time, error) {
	sa := c.ServiceAccount
	if sa == "" {
		sa = PluginServiceAccount
	}
	life := c.Lifetime
	if life <= 0 {
		life = DefaultPluginTokenLifetime
	}
	ca, err := os.ReadFile(c.CAFile)
	if err != nil {
		return time.Time{}, fmt.Errorf("read cluster CA for the plugin's kubeconfig: %w", err)
	}
	node, err := c.Client.CoreV1().Nodes().Get(ctx, c.NodeName, metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("read Node %s to bind the plugin's token to it: %w", c.NodeName, err)
	}
	secs := int64(life.Seconds())
	req := &authv1.TokenRequest{Spec: authv1.TokenRequestSpec{
		ExpirationSeconds: &secs,
		BoundObjectRef:    &authv1.BoundObjectReference{Kind: "Node", APIVersion: "v1", Name: node.Name, UID: node.UID},
	}}
	tr, err := c.Client.CoreV1().ServiceAccounts(c.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil && (apierrors.IsBadRequest(err) || apierrors.IsInvalid(err)) {
		c.log().Warn("the API server refuses Node-bound tokens (ServiceAccountTokenNodeBinding off, or Kubernetes before 1.31): the plugin's token is bound to nothing but its expiry, so deleting the Node does not revoke it",
			"serviceAccount", c.Namespace+"/"+sa, "lifetime", life.String(), "err", err)
		c.UnboundFallback = true
		if c.OnUnbound != nil {
			c.OnUnbound()
		}
		req.Spec.BoundObjectRef = nil
		tr, err = c.Client.CoreV1().ServiceAccounts(c.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("TokenRequest for the plugin's ServiceAccount %s/%s: %w", c.Namespace, sa, err)
	}
	if err := os.MkdirAll(filepath.Dir(c.Path), 0o700); err != nil {
		return time.Time{}, fmt.Errorf("create credential dir: %w", err)
	}
	if err := os.Chmod(filepath.Dir(c.Path), 0o700); err != nil {
		return time.Time{}, fmt.Errorf("credential dir: %w", err)
	}
	if err := install.WriteKubeconfig(c.Path, c.Server, ca, tr.Status.Token); err != nil {
		return time.Time{}, fmt.Errorf("write the plugin's kubeconfig: %w", err)
	}
	return tr.Status.ExpirationTimestamp.Time, nil
}

// Run writes the credential and refreshes it at half its lifetime until
// ctx ends (it then returns nil). written is called once the plugin has a
// credential: after the first successful refresh, or at once when a
// credential from before (an agent restart, a reboot: the dir is on disk)
// is there while the API server does not answer. Failures are retried with
// backoff (1 s doubling to 1 m) and logged at WARN.
func (c *PluginCredential) Run(ctx context.Context, written func()) error {
	once := func() {
		if written != nil {
			written()
			written = nil
		}
	}
	if _, err := os.Stat(c.Path); err == nil {
		once()
	}
	retry := time.Second
	var exp time.Time
	for {
		e, err := c.Refresh(ctx)
		var wait time.Duration
		if err == nil {
			if !exp.IsZero() && c.OnRefresh != nil {
				c.OnRefresh()
			}
			exp, retry = e, time.Second
			once()
			c.log().Info("wrote the plugin's Node-bound credential", "file", c.Path, "expires", exp)
			wait = time.Until(exp) / 2
		} else {
			if ctx.Err() != nil {
				return nil
			}
			c.log().Warn("cannot refresh the plugin's credential; retrying", "err", err, "retryIn", retry.String())
			if c.OnRefreshError != nil {
				c.OnRefreshError(err)
			}
			wait, retry = retry, min(2*retry, time.Minute)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
