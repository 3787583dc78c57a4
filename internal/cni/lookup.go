package cni

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kagenti/authbridge-node/internal/podinfo"
	"github.com/kagenti/authbridge-node/pkg/decision"
)

// DefaultAgentTimeout bounds the question to the node agent: the agent
// waits up to decision.DefaultWait for a pod its cache has not seen yet,
// then reads it from the API; past this the plugin asks the API itself.
const DefaultAgentTimeout = 4 * time.Second

// lookup returns the pod and its namespace's runtime config: from the node
// agent over the decision socket (its informer cache: no API request),
// and from the API server with the plugin's own Node-bound credential when
// the agent does not answer (restarting, upgrading, not yet started after
// a reboot). Either way the plugin decides itself.
func (p *Plugin) lookup(ctx context.Context, conf *Conf, log *slog.Logger, namespace, name, uid string) (*corev1.Pod, podinfo.NamespaceConfig, string, error) {
	if p.QueryAgent != nil {
		timeout := p.AgentTimeout
		if timeout <= 0 {
			timeout = DefaultAgentTimeout
		}
		actx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := p.QueryAgent(actx, filepath.Join(conf.StateDir, decision.SocketName), decision.Request{Namespace: namespace, Name: name, UID: uid})
		cancel()
		switch {
		case err == nil && resp.Error == "" && resp.Pod != nil:
			var nsCfg podinfo.NamespaceConfig
			if resp.NamespaceConfig != nil {
				if nsCfg, err = podinfo.ParseNamespaceConfig(namespace, []byte(*resp.NamespaceConfig)); err != nil {
					return nil, nsCfg, "", err
				}
			}
			log.Debug("decision inputs from the node agent", "pod", namespace+"/"+name, "source", resp.Source)
			rc := resp.Pod.Spec.RuntimeClassName
			if rc == nil || *rc == "" || resp.RuntimeHandler != nil {
				var h string
				if resp.RuntimeHandler != nil {
					h = *resp.RuntimeHandler
				}
				return resp.Pod, nsCfg, h, nil
			}
			// An agent from before RuntimeHandler was answered: read the
			// RuntimeClass below, the one API request such a pod costs.
			src, err := p.NewSource(conf)
			if err != nil {
				return nil, nsCfg, "", err
			}
			h, err := src.GetRuntimeClassHandler(ctx, *rc)
			return resp.Pod, nsCfg, h, err
		case err == nil:
			log.Info("the node agent could not answer; asking the API server", "pod", namespace+"/"+name, "reason", resp.Error)
		case errors.Is(err, decision.ErrUnavailable):
			log.Info("the node agent does not answer; asking the API server with the plugin's own credential", "pod", namespace+"/"+name, "err", err)
		default:
			return nil, podinfo.NamespaceConfig{}, "", err
		}
	}
	src, err := p.NewSource(conf)
	if err != nil {
		return nil, podinfo.NamespaceConfig{}, "", err
	}
	pod, err := src.GetPod(ctx, namespace, name)
	if err != nil {
		return nil, podinfo.NamespaceConfig{}, "", err
	}
	nsCfg, err := src.GetNamespaceConfig(ctx, namespace)
	if err != nil {
		return nil, nsCfg, "", err
	}
	var handler string
	if rc := pod.Spec.RuntimeClassName; rc != nil && *rc != "" {
		if handler, err = src.GetRuntimeClassHandler(ctx, *rc); err != nil {
			return nil, nsCfg, "", err
		}
	}
	return pod, nsCfg, handler, nil
}
