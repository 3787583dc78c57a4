package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/install"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// KubeconfigName is the plugin kubeconfig's file name in the CNI conf dir.
const KubeconfigName = "authbridge-cni.kubeconfig"

// PluginEntry is the conflist entry for cfg: type authbridge-cni, the
// kubeconfig as the plugin on the host sees it, log file, state dir and
// the policy fields inline.
func PluginEntry(cfg config.Agent, logFile string) (json.RawMessage, error) {
	return json.Marshal(pluginconf.New(pluginconf.Fields{
		Kubeconfig: filepath.Join(cfg.HostCNIConfDir, KubeconfigName),
		LogFile:    logFile,
		StateDir:   cfg.StateDir,
		Policy:     cfg.Policy,
	}))
}

// PluginInstaller is the production Installer: the plugin kubeconfig
// (kept fresh by install.TokenRefresher), the binary, then the conflist
// entry kept by install.Keeper.
type PluginInstaller struct {
	Config config.Agent
	// SourceBinary is the plugin binary shipped in the agent image.
	SourceBinary string
	// PluginLogFile defaults to pluginconf.DefaultLogFile.
	PluginLogFile string
	// Token refresher inputs: the agent's projected token and CA, and the
	// API server URL the plugin (on the host network) uses.
	TokenFile, CAFile, APIServer string
	OnReinsert                   func()
	OnRefresh                    func()
	Logger                       *slog.Logger

	mu   sync.Mutex
	opts install.Options
}

func (p *PluginInstaller) options() (install.Options, error) {
	logFile := p.PluginLogFile
	if logFile == "" {
		logFile = pluginconf.DefaultLogFile
	}
	entry, err := PluginEntry(p.Config, logFile)
	if err != nil {
		return install.Options{}, err
	}
	return install.Options{
		ConfDir:            p.Config.CNIConfDir,
		BinDir:             p.Config.CNIBinDir,
		SourceBinary:       p.SourceBinary,
		Entry:              entry,
		IgnoreNames:        []string{KubeconfigName},
		KeepEntryOnUpgrade: p.Config.KeepEntryOnUpgrade,
		Logger:             p.Logger,
	}, nil
}

// Run implements Installer.
func (p *PluginInstaller) Run(ctx context.Context, installed func()) error {
	o, err := p.options()
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.opts = o
	p.mu.Unlock()
	if _, err := os.Stat(p.SourceBinary); err != nil {
		return fmt.Errorf("plugin binary (flag --plugin-binary): %w", err)
	}
	tr := &install.TokenRefresher{
		TokenFile:      p.TokenFile,
		CAFile:         p.CAFile,
		Server:         p.APIServer,
		KubeconfigPath: filepath.Join(p.Config.CNIConfDir, KubeconfigName),
		OnRefresh:      p.OnRefresh,
		Logger:         p.Logger,
	}
	// The kubeconfig first: the plugin needs it on its first ADD.
	if _, _, err := tr.Refresh(time.Now()); err != nil {
		return fmt.Errorf("write plugin kubeconfig: %w", err)
	}
	if _, err := install.InstallBinary(o.SourceBinary, o.BinDir, pluginconf.PluginType); err != nil {
		return fmt.Errorf("install plugin binary: %w", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := tr.Run(ctx); err != nil {
			errs <- fmt.Errorf("token refresher: %w", err)
		}
	}()
	go func() {
		defer wg.Done()
		k := &install.Keeper{
			Options:     o,
			OnInstalled: func(install.Result) { installed() },
			OnReinsert: func(string) {
				if p.OnReinsert != nil {
					p.OnReinsert()
				}
			},
		}
		if err := k.Run(ctx); err != nil {
			errs <- fmt.Errorf("conflist keeper: %w", err)
		}
	}()
	wg.Wait()
	close(errs)
	var all []error
	for e := range errs {
		all = append(all, e)
	}
	return errors.Join(all...)
}

// Uninstall implements Installer: entry, then binary (install.Uninstall),
// then the kubeconfig (it holds a credential).
func (p *PluginInstaller) Uninstall(ctx context.Context) error {
	p.mu.Lock()
	o := p.opts
	p.mu.Unlock()
	if o.ConfDir == "" {
		var err error
		if o, err = p.options(); err != nil {
			return err
		}
	}
	if err := install.Uninstall(ctx, o); err != nil {
		return err
	}
	if o.KeepEntryOnUpgrade {
		return nil
	}
	if err := os.Remove(filepath.Join(o.ConfDir, KubeconfigName)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove plugin kubeconfig: %w", err)
	}
	return nil
}
