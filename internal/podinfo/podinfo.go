// Package podinfo answers the CNI plugin's questions about the pod it is
// wiring: what the Kubernetes API says about the pod and its namespace
// (Source, implemented with client-go in KubeSource), which egress
// enforcement mode the pod gets (Decide, a pure function), and which DNS
// resolvers its rules must let through (Resolvers).
//
// How a pod is recognised as an AuthBridge pod: it has a container, or a
// native sidecar (an init container with restartPolicy Always), whose name
// is listed in the policy's sidecarContainerNames (default
// "authbridge-proxy"). Every other pod is left untouched (mode skip).
//
// Mode precedence: the namespace ConfigMap authbridge-runtime-config (key
// config.yaml, field egressEnforcement), else the policy's defaultMode; the
// pod annotation kagenti.io/egress-enforcement may only strengthen it
// (enforce-redirect > auto > none), a weaker one is an error. Modes none and
// auto-on-a-node-without-a-working-backend become cooperative only where the
// policy allows it (allowCooperative + acknowledgeCooperativeRisks); otherwise
// Decide returns an error and the pod does not start (fail closed).
//
// Resolvers are derived from the pod spec only (dnsPolicy/dnsConfig) and the
// node state; no file inside the pod is ever read (the pod has not started).
// A nameserver the pod names itself (dnsConfig.nameservers) must be a cluster
// DNS IP, a node resolver or inside the policy's allowedPodNameservers: DNS
// to a resolver bypasses the proxy, so the pod spec's author must not choose it.
package podinfo

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/pkg/config"
)

// Source reads what the plugin needs from the Kubernetes API.
type Source interface {
	// GetPod returns the pod; an unreachable API server or a missing pod is
	// an error (never a silent default).
	GetPod(ctx context.Context, namespace, name string) (*corev1.Pod, error)
	// GetNamespaceConfig returns the namespace's runtime config; a namespace
	// without the ConfigMap yields the zero NamespaceConfig.
	GetNamespaceConfig(ctx context.Context, namespace string) (NamespaceConfig, error)
	// GetRuntimeClassHandler returns the handler of the named RuntimeClass;
	// a missing RuntimeClass is an error (the pod could not run anyway).
	GetRuntimeClassHandler(ctx context.Context, name string) (string, error)
}

// NamespaceConfig is the part of ConfigMap authbridge-runtime-config
// (key config.yaml) the plugin reads.
type NamespaceConfig struct {
	// EgressEnforcement is the namespace's mode; empty means not set.
	EgressEnforcement config.Mode
}
