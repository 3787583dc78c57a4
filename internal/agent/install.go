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

	"github.com/kagenti/authbridge-node/internal/install"
	"github.com/kagenti/authbridge-node/pkg/config"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// KubeconfigName is the plugin kubeconfig's file name in the CNI conf dir
// of earlier versions (with the agent pod's token); removed at install.
const KubeconfigName = "authbridge-cni.kubeconfig"

// PluginEntry is the conflist entry for cfg: type authbridge-cni, the
// kubeconfig as the plugin on the host sees it, log file, state dir and
// the policy fields inline.
func PluginEntry(cfg config.Agent, logFile string) (json.RawMessage, error) {
	return json.Marshal(pluginconf.New(pluginconf.Fields{
		Kubeconfig: filepath.Join(cfg.CredentialDir, PluginKubeconfigName),
		LogFile:    logFile,
		StateDir:   cfg.StateDir,
		Policy:     cfg.Policy,
	}))
}

// credentialWait bounds how long the install waits for the plugin's first
// credential before it goes on without one.
const credentialWait = 10 * time.Second

// PluginInstaller is the production Installer: the plugin's Node-bound
// credential (PluginCredential), the binary, then the conflist entry kept
// by install.Keeper.
type PluginInstaller struct {
	Config config.Agent
	// SourceBinary is the plugin binary shipped in the agent image.
	SourceBinary string
	// PluginLogFile defaults to pluginconf.DefaultLogFile.
	PluginLogFile string
	// Credential writes and refreshes the plugin's kubeconfig; its Path
	// is set from Config.CredentialDir.
	Credential *PluginCredential
	OnReinsert func()
	Logger     *slog.Logger

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
		ConfDir:      p.Config.CNIConfDir,
		BinDir:       p.Config.CNIBinDir,
		SourceBinary: p.SourceBinary,
		Entry:        entry,
		IgnoreNames:  []string{KubeconfigName},
		// Uninstall removes the credential after entry and binary.
		KubeconfigPath: filepath.Join(p.Config.CredentialDir, PluginKubeconfigName),
		Logger:         p.Logger,
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
	cred := p.Credential
	if cred == nil {
		return errors.New("plugin installer: no credential configured")
	}
	cred.Path = filepath.Join(p.Config.CredentialDir, PluginKubeconfigName)
	// The credential first: the plugin needs it whenever the agent does
	// not answer, from its first ADD on.
	credCtx, stopCred := context.WithCancel(ctx)
	defer stopCred()
	credErr := make(chan error, 1)
	written := make(chan struct{})
	go func() { credErr <- cred.Run(credCtx, func() { close(written) }) }()
	// The decision socket is the plugin's first path; the credential is
	// its fallback. A credential that cannot be had (the authbridge-cni
	// ServiceAccount or its RBAC missing after an image-only upgrade, the
	// API server away with nothing on disk) must not keep the plugin
	// uninstalled: wait a little, then go on and keep retrying.
	wait := time.NewTimer(credentialWait)
	defer wait.Stop()
	select {
	case <-written:
	case <-wait.C:
		p.log().Warn("no credential for the plugin yet; installing anyway: while this agent answers on the decision socket nothing is lost, but when it does not, ADDs outside excludeNamespaces fail closed until the credential is written",
			"file", cred.Path, "waited", credentialWait.String())
	case err := <-credErr:
		if err == nil {
			return nil // ctx ended
		}
		return fmt.Errorf("write the plugin's credential: %w", err)
	}
	// Earlier versions kept a pod-bound token in the conf dir.
	if err := os.Remove(filepath.Join(p.Config.CNIConfDir, KubeconfigName)); err == nil {
		p.log().Info("removed the old plugin kubeconfig from the CNI conf dir", "file", filepath.Join(p.Config.CNIConfDir, KubeconfigName))
	}
	if _, err := install.InstallBinary(o.SourceBinary, o.BinDir, pluginconf.PluginType); err != nil {
		return fmt.Errorf("install plugin binary: %w", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := <-credErr; err != nil {
			errs <- fmt.Errorf("plugin credential: %w", err)
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
// then the plugin's kubeconfig (it holds a credential).
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
	if err := os.Remove(filepath.Join(o.ConfDir, KubeconfigName)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove old plugin kubeconfig: %w", err)
	}
	return nil
}

func (p *PluginInstaller) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}
