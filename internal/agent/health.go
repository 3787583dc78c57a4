package agent

import (
	"fmt"
	"net/http"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// health is the agent's readiness: installed AND probed AND the Node
// labelled (which proves the API server is reachable).
type health struct {
	mu                                  sync.Mutex
	installed, probed, synced, stopping bool
	installErr                          error
}

func (h *health) readyLocked() bool {
	return h.installed && h.probed && h.synced && !h.stopping
}

func (h *health) ready() (bool, string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.stopping:
		return false, "shutting down"
	case h.installErr != nil:
		return false, fmt.Sprintf("plugin install failed: %v", h.installErr)
	case !h.installed:
		return false, "authbridge-cni plugin not installed yet"
	case !h.probed:
		return false, "capability probe has not run yet"
	case !h.synced:
		return false, "Node labels not written yet (API server unreachable?)"
	}
	return true, "ok"
}

func (h *health) set(f func()) (becameReady bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	before := h.readyLocked()
	f()
	return !before && h.readyLocked()
}

func (h *health) setInstalled() bool      { return h.set(func() { h.installed = true }) }
func (h *health) setProbed() bool         { return h.set(func() { h.probed = true }) }
func (h *health) setNodeSynced() bool     { return h.set(func() { h.synced = true }) }
func (h *health) setStopping()            { h.set(func() { h.stopping = true }) }
func (h *health) setInstallErr(err error) { h.set(func() { h.installErr = err }) }

func (h *health) isInstalled() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.installed
}

func (h *health) handler(reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		ok, why := h.ready()
		if !ok {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, why)
	})
	return mux
}
