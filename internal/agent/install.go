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
	mode, err := p.resolveMode(ctx, o)
	if err != nil || mode == "" {
		return err // "" : ctx ended while waiting for a CNI config
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
		if mode == config.InstallMultusAttachment {
			if err := p.keepEntryFile(ctx, o, installed); err != nil {
				errs <- fmt.Errorf("plugin entry file: %w", err)
			}
			return
		}
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
			// Stop the credential too, so Run returns the error now
			// (the agent logs it and stays unready with the reason)
			// instead of waiting silently for the credential loop,
			// which only ends with ctx.
			stopCred()
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
	// The attachment's entry file first: from then on an ADD through the
	// NetworkAttachmentDefinition fails closed, naming the missing file,
	// while the binary is still there for the DELs of running pods.
	if err := install.RemoveEntryFile(p.EntryFile()); err != nil {
		return err
	}
	if err := install.Uninstall(ctx, o); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(o.ConfDir, KubeconfigName)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove old plugin kubeconfig: %w", err)
	}
	return nil
}

// EntryFile is where the plugin's entry goes in multus-attachment mode:
// credentialDir/authbridge-cni-entry.json, the path the
// NetworkAttachmentDefinition's entryFile names.
func (p *PluginInstaller) EntryFile() string {
	return filepath.Join(p.Config.CredentialDir, pluginconf.EntryFileName)
}

// modeRetry is how often auto mode looks again for the primary CNI's config.
const modeRetry = time.Second

// resolveMode decides chain or multus-attachment (install.ResolveMode);
// with auto it waits for the primary CNI's first config. It returns ""
// when ctx ends first.
func (p *PluginInstaller) resolveMode(ctx context.Context, o install.Options) (config.InstallMode, error) {
	waiting := false
	for {
		mode, why, err := install.ResolveMode(o, p.Config.CNIInstallMode)
		switch {
		case err == nil:
			p.log().Info("CNI install mode", "mode", string(mode), "why", why)
			return mode, nil
		case errors.Is(err, install.ErrNoPrimaryConfig):
			if !waiting {
				p.log().Info("cniInstallMode auto: waiting for the primary CNI to write its config", "dir", o.ConfDir)
				waiting = true
			}
		default:
			// A first file that does not parse: the runtime fails on it
			// too; the primary CNI's next write may fix it.
			p.log().Warn("cniInstallMode auto: cannot read the default network's config", "dir", o.ConfDir, "err", err)
		}
		select {
		case <-ctx.Done():
			return "", nil
		case <-time.After(modeRetry):
		}
	}
}

// keepEntryFile is multus-attachment mode: the conf dir is not ours to
// edit (Multus' config belongs to the Cluster Network Operator), so any
// entry an earlier chain-mode agent left in it is removed (a converted
// 00-multus.conf is restored), and the plugin's entry is written to
// EntryFile, and rewritten every resync if it changed or went missing,
// until ctx ends.
func (p *PluginInstaller) keepEntryFile(ctx context.Context, o install.Options, installed func()) error {
	changed, err := install.RemoveEntry(o)
	if len(changed) > 0 {
		p.log().Info("multus-attachment mode: removed the chained authbridge-cni entry an earlier install left in the conf dir", "files", changed)
	}
	if err != nil {
		p.log().Warn("multus-attachment mode: cannot remove an old chained entry", "err", err)
	}
	path := p.EntryFile()
	if _, err := install.WriteEntryFile(path, o); err != nil {
		return err
	}
	p.log().Info("multus-attachment mode: wrote the plugin's entry for the NetworkAttachmentDefinition", "file", path)
	installed()
	t := time.NewTicker(install.DefaultResync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if ch, err := install.WriteEntryFile(path, o); err != nil {
				p.log().Warn("cannot rewrite the plugin's entry file", "file", path, "err", err)
			} else if ch {
				p.log().Info("rewrote the plugin's entry file (it was changed or removed)", "file", path)
			}
		}
	}
}

func (p *PluginInstaller) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}
