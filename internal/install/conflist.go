package install

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// ConfExtensions are the file extensions containerd (go-cni), CRI-O (ocicni)
// and libcni read network configs from.
var ConfExtensions = []string{".conf", ".conflist", ".json"}

// BackupSuffix is appended to a single-plugin .conf (or .json) that
// InstallEntry converted into a .conflist. The suffix is not a config
// extension, so runtimes do not load the backup.
const BackupSuffix = ".authbridge-backup"

// ErrNoPrimaryConfig means the conf dir holds no CNI network config yet
// (the primary CNI has not written one). The keeper waits for one.
var ErrNoPrimaryConfig = errors.New("no CNI network config in the conf dir yet")

// Result says where our entry is and what InstallEntry did.
type Result struct {
	// File is the conflist that holds our entry.
	File string
	// Changed is true when a file was written (false: entry already there).
	Changed bool
	// Converted names the single-plugin config that was turned into File
	// (its original is kept at Converted+BackupSuffix); empty otherwise.
	Converted string
}

// Options is what install, keep and uninstall need. The zero value of every
// optional field is a safe default.
type Options struct {
	// ConfDir is the CNI conf dir (/etc/cni/net.d; on OpenShift with
	// Multus /etc/kubernetes/cni/net.d).
	ConfDir string
	// BinDir is the CNI bin dir (/opt/cni/bin; OpenShift /var/lib/cni/bin).
	BinDir string
	// BinaryName is the plugin's file name in BinDir; default pluginconf.PluginType.
	BinaryName string
	// SourceBinary is the plugin binary shipped in the agent image.
	SourceBinary string
	// Entry is our conflist entry: json.RawMessage, []byte, or anything
	// json.Marshal turns into an object (map[string]any, a struct). Its
	// "type" must be pluginconf.PluginType or absent (then it is set). The list's
	// cniVersion and name are injected by the runtime, so the entry should
	// not carry its own.
	Entry any
	// IgnoreNames are base names in ConfDir that are ours and never a
	// network config (the plugin kubeconfig, ...), even with a config
	// extension.
	IgnoreNames []string
	// KubeconfigPath, if set, is the plugin kubeconfig Uninstall deletes
	// after the binary (it holds a token; do not leave it on the host).
	// Usually inside ConfDir, so list its base name in IgnoreNames too.
	KubeconfigPath string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

func (o Options) binaryName() string {
	if o.BinaryName != "" {
		return o.BinaryName
	}
	return pluginconf.PluginType
}

// entry returns our entry as a compact JSON object with type pluginconf.PluginType.
func (o Options) entry() (json.RawMessage, error) {
	var raw []byte
	switch e := o.Entry.(type) {
	case nil:
		return nil, errors.New("option Entry: our conflist entry is missing")
	case json.RawMessage:
		raw = e
	case []byte:
		raw = e
	default:
		b, err := json.Marshal(e)
		if err != nil {
			return nil, fmt.Errorf("option Entry: %w", err)
		}
		raw = b
	}
	obj, err := parseObject(raw)
	if err != nil {
		return nil, fmt.Errorf("option Entry: want a JSON object: %w", err)
	}
	typeRaw, _ := json.Marshal(pluginconf.PluginType)
	if _, ok := obj.get("type"); !ok {
		obj = append(object{{Key: "type", Value: typeRaw}}, obj...)
	} else if t, _ := obj.getString("type"); t != pluginconf.PluginType {
		return nil, fmt.Errorf("option Entry: field type must be %q", pluginconf.PluginType)
	}
	return obj.compact()
}

// confFile is a parsed candidate network config.
type confFile struct {
	path    string
	data    []byte
	mode    fs.FileMode
	obj     object
	plugins []json.RawMessage // nil for a single-plugin config
	single  bool              // a .conf/.json with "type" and no "plugins"
}

// candidates lists the files runtimes would consider, in the order they
// consider them: libcni.ConfFiles (regular entries of the dir with a config
// extension, symlinks included) sorted by sort.Strings, exactly as
// containerd's go-cni (loadFromConfDir) and CRI-O's ocicni do; the first
// one is the default ("primary") network.
func candidates(dir string, ignore []string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read CNI conf dir: %w", err)
	}
	var files []string
	for _, e := range entries {
		if e.IsDir() || slices.Contains(ignore, e.Name()) {
			continue
		}
		if slices.Contains(ConfExtensions, filepath.Ext(e.Name())) {
			files = append(files, filepath.Join(dir, e.Name()))
		}
	}
	sort.Strings(files)
	return files, nil
}

// errNotCNI marks a parseable file that is not a network config.
var errNotCNI = errors.New("not a CNI network config")

// loadConf reads and parses one candidate. A file that is not JSON is an
// error naming the file; a JSON file that has neither "plugins" nor "type"
// is errNotCNI.
func loadConf(path string) (*confFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	obj, err := parseObject(data)
	if errors.Is(err, errNotObject) {
		return nil, fmt.Errorf("%s: %w", path, errNotCNI)
	}
	if err != nil {
		return nil, fmt.Errorf("%s does not parse, left untouched: %w", path, err)
	}
	c := &confFile{path: path, data: data, mode: fi.Mode().Perm(), obj: obj}
	if raw, ok := obj.get("plugins"); ok {
		c.plugins, err = decodeArray(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: field plugins is not a list of plugin configs, left untouched: %w", path, err)
		}
		for i, p := range c.plugins {
			if _, err := parseObject(p); err != nil {
				return nil, fmt.Errorf("%s: plugins[%d] is not an object, left untouched: %w", path, i, err)
			}
		}
		return c, nil
	}
	if _, ok := obj.getString("type"); ok {
		c.single = true
		return c, nil
	}
	return nil, fmt.Errorf("%s: %w", path, errNotCNI)
}

// primary returns the first candidate that is a network config. A file that
// does not parse stops the search: runtimes would fail on it too, and we
// never guess past it.
func primary(o Options) (*confFile, error) {
	files, err := candidates(o.ConfDir, o.IgnoreNames)
	if err != nil {
		return nil, err
	}
	for _, f := range files {
		c, err := loadConf(f)
		if errors.Is(err, errNotCNI) {
			o.logger().Debug("skipping file that is not a CNI config", "file", f)
			continue
		}
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir
		}
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return nil, fmt.Errorf("%s: %w", o.ConfDir, ErrNoPrimaryConfig)
}

// PrimaryConfFile returns the file the runtime uses as the default network:
// the lexically first *.conf/*.conflist/*.json of confDir that is a CNI
// config, skipping ignore (base names) and JSON files that are not CNI
// configs. It fails, naming the file, if that file does not parse.
func PrimaryConfFile(confDir string, ignore []string) (string, error) {
	c, err := primary(Options{ConfDir: confDir, IgnoreNames: ignore})
	if err != nil {
		return "", err
	}
	return c.path, nil
}

func pluginType(p json.RawMessage) string {
	obj, err := parseObject(p)
	if err != nil {
		return ""
	}
	t, _ := obj.getString("type")
	return t
}

// withoutOurs drops every entry of type pluginconf.PluginType.
func withoutOurs(plugins []json.RawMessage) (rest []json.RawMessage, removed int) {
	rest = make([]json.RawMessage, 0, len(plugins))
	for _, p := range plugins {
		if pluginType(p) == pluginconf.PluginType {
			removed++
			continue
		}
		rest = append(rest, p)
	}
	return rest, removed
}

// InstallEntry puts our entry last in the primary network's plugin list.
// An older copy of our entry is replaced; when the entry is already present,
// last, once and equal to the wanted one nothing is written (so the keeper's
// own writes do not cause write loops). A single-plugin config is converted
// into name.conflist {cniVersion, name, plugins: [original, ours]} and the
// original is kept as a backup that RemoveEntry restores. Every other field
// of the file is kept as written; only whitespace changes.
func InstallEntry(o Options) (Result, error) {
	entry, err := o.entry()
	if err != nil {
		return Result{}, err
	}
	c, err := primary(o)
	if err != nil {
		return Result{}, err
	}
	if c.single {
		return convert(o, c, entry)
	}
	rest, removed := withoutOurs(c.plugins)
	if removed == 1 && len(c.plugins) > 0 && semanticEqual(c.plugins[len(c.plugins)-1], entry) {
		return Result{File: c.path}, nil
	}
	out, err := c.obj.set("plugins", encodeArray(append(rest, entry))).render()
	if err != nil {
		return Result{}, fmt.Errorf("render %s: %w", c.path, err)
	}
	if err := atomicfile.Write(c.path, out, c.mode); err != nil {
		return Result{}, err
	}
	o.logger().Info("inserted authbridge-cni entry", "file", c.path, "replacedOld", removed)
	return Result{File: c.path, Changed: true}, nil
}

// convertedName is the .conflist a single-plugin config becomes.
func convertedName(path string) string {
	return strings.TrimSuffix(path, filepath.Ext(path)) + ".conflist"
}

// buildConverted is the conflist libcni's ConfListFromConf would make of a
// single-plugin config, followed by extra plugins.
func buildConverted(single object, extra ...json.RawMessage) (object, error) {
	var out object
	for _, k := range []string{"cniVersion", "name"} {
		if v, ok := single.get(k); ok {
			out = append(out, member{Key: k, Value: v})
		}
	}
	orig, err := single.compact()
	if err != nil {
		return nil, err
	}
	plugins := append([]json.RawMessage{orig}, extra...)
	return append(out, member{Key: "plugins", Value: encodeArray(plugins)}), nil
}

func convert(o Options, c *confFile, entry json.RawMessage) (Result, error) {
	if t, _ := c.obj.getString("type"); t == pluginconf.PluginType {
		return Result{}, fmt.Errorf("%s: a single-plugin config of type %q cannot be chained; remove it", c.path, pluginconf.PluginType)
	}
	target := convertedName(c.path)
	backup := c.path + BackupSuffix
	if _, err := os.Lstat(target); err == nil {
		if _, err := os.Lstat(backup); err != nil {
			return Result{}, fmt.Errorf("%s must become %s, but that file exists and was not written by us; left both untouched", c.path, target)
		}
	}
	conv, err := buildConverted(c.obj, entry)
	if err != nil {
		return Result{}, fmt.Errorf("convert %s: %w", c.path, err)
	}
	out, err := conv.render()
	if err != nil {
		return Result{}, fmt.Errorf("convert %s: %w", c.path, err)
	}
	// Backup first, then the conflist, then drop the original: at every
	// step the lexically first file is a complete config.
	if err := atomicfile.Write(backup, c.data, c.mode); err != nil {
		return Result{}, err
	}
	if err := atomicfile.Write(target, out, c.mode); err != nil {
		return Result{}, err
	}
	if err := atomicfile.Remove(c.path); err != nil {
		return Result{}, err
	}
	o.logger().Info("converted single-plugin config into a conflist with the authbridge-cni entry", "from", c.path, "file", target, "backup", backup)
	return Result{File: target, Changed: true, Converted: c.path}, nil
}

// backupFor finds the backup of the single-plugin config that became
// conflist, if any.
func backupFor(conflist string) (orig, backup string, ok bool) {
	base := strings.TrimSuffix(conflist, ".conflist")
	if base == conflist {
		return "", "", false
	}
	for _, ext := range []string{".conf", ".json"} {
		b := base + ext + BackupSuffix
		if _, err := os.Lstat(b); err == nil {
			return base + ext, b, true
		}
	}
	return "", "", false
}

// RemoveEntry removes our entry from every network config in the conf dir
// (not only the primary: an older primary may still hold one). A conflist
// that we converted from a single-plugin config and that is, without our
// entry, exactly what we made of it is replaced by the original again. It
// returns the files it changed; a file that does not parse is reported in
// the error (and left untouched) after the others are cleaned.
func RemoveEntry(o Options) ([]string, error) {
	files, err := candidates(o.ConfDir, o.IgnoreNames)
	if err != nil {
		return nil, err
	}
	var changed []string
	var errs []error
	for _, f := range files {
		c, err := loadConf(f)
		if errors.Is(err, errNotCNI) || errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if c.single {
			continue
		}
		rest, removed := withoutOurs(c.plugins)
		if removed == 0 {
			continue
		}
		restored, err := restore(o, c, rest)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if restored != "" {
			changed = append(changed, restored, c.path)
			continue
		}
		out, err := c.obj.set("plugins", encodeArray(rest)).render()
		if err != nil {
			errs = append(errs, fmt.Errorf("render %s: %w", c.path, err))
			continue
		}
		if err := atomicfile.Write(c.path, out, c.mode); err != nil {
			errs = append(errs, err)
			continue
		}
		o.logger().Info("removed authbridge-cni entry", "file", c.path)
		changed = append(changed, c.path)
	}
	return changed, errors.Join(errs...)
}

// restore puts back the single-plugin original of a converted conflist when
// the conflist without our entry is still exactly the conversion. It returns
// the restored file, or "" when there is nothing to restore (then the
// caller edits the conflist in place, and a stale backup is dropped).
func restore(o Options, c *confFile, rest []json.RawMessage) (string, error) {
	orig, backup, ok := backupFor(c.path)
	if !ok {
		return "", nil
	}
	data, err := os.ReadFile(backup)
	if err != nil {
		return "", fmt.Errorf("read backup %s: %w", backup, err)
	}
	single, err := parseObject(data)
	if err != nil {
		return "", fmt.Errorf("backup %s does not parse, left untouched: %w", backup, err)
	}
	want, err := buildConverted(single)
	if err != nil {
		return "", fmt.Errorf("backup %s: %w", backup, err)
	}
	wantRaw, err := want.compact()
	if err != nil {
		return "", err
	}
	haveRaw, err := c.obj.set("plugins", encodeArray(rest)).compact()
	if err != nil {
		return "", err
	}
	if !semanticEqual(wantRaw, haveRaw) {
		// Someone changed the conflist since we made it: keep their
		// version (minus our entry) and drop the outdated backup.
		o.logger().Info("converted conflist was changed by someone else; keeping it and dropping the backup", "file", c.path, "backup", backup)
		if err := atomicfile.Remove(backup); err != nil {
			return "", err
		}
		return "", nil
	}
	// The original first, so the lexically first file is always complete.
	if err := atomicfile.Write(orig, data, c.mode); err != nil {
		return "", err
	}
	if err := atomicfile.Remove(c.path); err != nil {
		return "", err
	}
	if err := atomicfile.Remove(backup); err != nil {
		return "", err
	}
	o.logger().Info("restored single-plugin config", "file", orig, "removed", c.path)
	return orig, nil
}
