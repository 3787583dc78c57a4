package install

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
	"github.com/kagenti/authbridge-node/pkg/config"
)

// MultusTypes are the plugin types of Multus' own config: "multus" (the
// thin plugin) and "multus-shim" (the thick plugin's shim, which OpenShift's
// Cluster Network Operator writes into 00-multus.conf).
var MultusTypes = []string{"multus", "multus-shim"}

// PrimaryIsMultus reports whether the runtime's default network (the
// lexically first config of the conf dir, PrimaryConfFile) is Multus: a
// single-plugin config of a MultusTypes type, or a conflist whose first
// plugin is one (what earlier agent versions made of 00-multus.conf by
// chaining themselves into it). It returns the file it looked at.
func PrimaryIsMultus(o Options) (bool, string, error) {
	c, err := primary(o)
	if err != nil {
		return false, "", err
	}
	t, _ := c.obj.getString("type")
	if !c.single && len(c.plugins) > 0 {
		t = pluginType(c.plugins[0])
	}
	for _, m := range MultusTypes {
		if t == m {
			return true, c.path, nil
		}
	}
	return false, c.path, nil
}

// ResolveMode turns the configured cniInstallMode into chain or
// multus-attachment. auto is multus-attachment when the default network is
// Multus, else chain; it needs a config in the conf dir (ErrNoPrimaryConfig
// until the primary CNI wrote one). why says what decided, for the log.
func ResolveMode(o Options, mode config.InstallMode) (resolved config.InstallMode, why string, err error) {
	switch mode {
	case config.InstallChain, config.InstallMultusAttachment:
		return mode, "set in cniInstallMode", nil
	case config.InstallAuto, "":
	default:
		return "", "", fmt.Errorf("cniInstallMode %q: allowed values are %v", mode, config.InstallModes)
	}
	multus, file, err := PrimaryIsMultus(o)
	if err != nil {
		return "", "", err
	}
	if multus {
		return config.InstallMultusAttachment, "cniInstallMode auto: the default network " + file + " is Multus", nil
	}
	return config.InstallChain, "cniInstallMode auto: the default network " + file + " is not Multus", nil
}

// WriteEntryFile writes the plugin's entry where a Multus attachment's
// config (entryFile) points: the same JSON object the chain mode puts in
// the conflist, 0600 (it names the plugin's credential), atomically, so a
// plugin run never reads half a file.
func WriteEntryFile(path string, o Options) (changed bool, err error) {
	entry, err := o.entry()
	if err != nil {
		return false, err
	}
	if old, rerr := os.ReadFile(path); rerr == nil && semanticEqual(old, entry) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, fmt.Errorf("create the entry file's directory: %w", err)
	}
	if err := atomicfile.Write(path, entry, 0o600); err != nil {
		return false, fmt.Errorf("write the plugin's entry file %s: %w", path, err)
	}
	return true, nil
}

// RemoveEntryFile removes the entry file; a missing one is nothing to do.
func RemoveEntryFile(path string) error {
	if err := atomicfile.Remove(path); err != nil {
		return fmt.Errorf("remove the plugin's entry file: %w", err)
	}
	return nil
}
