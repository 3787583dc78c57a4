package kata

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// guestAsset is the guest boot asset one [hypervisor.<name>] section uses.
type guestAsset struct {
	Hypervisor string // section name after "hypervisor."
	Initrd     string // host path, "" when the guest boots a disk image
	Image      string // host path of the rootfs image, if any
	// Confidential is confidential_guest = true: a TEE guest (TDX, SNP,
	// SE, CCA) whose boot assets are measured into its attestation.
	Confidential bool
	// VerityParams is kernel_verity_params: the image's root file system
	// is checked by dm-verity against a root hash on the kernel command line.
	VerityParams string
	// KernelParams is kernel_params (dm-verity can also be set up there).
	KernelParams string
}

// measured reports an image whose contents are pinned (dm-verity, TEE
// measurement): changing a byte of it stops the guest from booting or
// breaks attestation.
func (a guestAsset) measured() bool {
	return a.Confidential || a.VerityParams != "" || strings.Contains(a.KernelParams, "dm-mod.create") || strings.Contains(a.KernelParams, "verity")
}

// remote reports a [hypervisor.remote] section (peer-pods): the guest runs
// in a cloud VM the cloud-api-adaptor starts, with no local boot asset.
func (a guestAsset) remote() bool { return a.Hypervisor == "remote" }

// kataConfig is the part of a Kata configuration.toml this package reads.
type kataConfig struct {
	Hypervisor map[string]map[string]any `toml:"hypervisor"`
}

// guestAssets parses a Kata configuration and returns each hypervisor
// section's boot asset, sorted by section name.
func guestAssets(content []byte) ([]guestAsset, error) {
	var c kataConfig
	if err := toml.Unmarshal(content, &c); err != nil {
		return nil, fmt.Errorf("parse Kata configuration: %w", err)
	}
	var out []guestAsset
	for name, sec := range c.Hypervisor {
		a := guestAsset{Hypervisor: name}
		if v, ok := sec["initrd"].(string); ok {
			a.Initrd = v
		}
		if v, ok := sec["image"].(string); ok {
			a.Image = v
		}
		if v, ok := sec["confidential_guest"].(bool); ok {
			a.Confidential = v
		}
		if v, ok := sec["kernel_verity_params"].(string); ok {
			a.VerityParams = v
		}
		if v, ok := sec["kernel_params"].(string); ok {
			a.KernelParams = v
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Hypervisor < out[j].Hypervisor })
	return out, nil
}

var (
	tableLine = regexp.MustCompile(`^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$`)
	// key = "value" or key = 'value', with an optional trailing comment.
	assetLines = map[string]*regexp.Regexp{
		"initrd": regexp.MustCompile(`^(\s*initrd\s*=\s*)("([^"\\]*)"|'([^']*)')(\s*(#.*)?)$`),
		"image":  regexp.MustCompile(`^(\s*image\s*=\s*)("([^"\\]*)"|'([^']*)')(\s*(#.*)?)$`),
	}
)

// lineTables gives, for each line of a Kata configuration (split with
// strings.SplitAfter), the TOML table it sits in: "" before the first header,
// and a header line is in the table it opens. The line editors here use it
// to find the lines of [hypervisor.<name>] or [runtime] without a parser
// that would rewrite the administrator's file.
func lineTables(lines []string) []string {
	out := make([]string, len(lines))
	current := ""
	for i, l := range lines {
		if m := tableLine.FindStringSubmatch(strings.TrimRight(l, "\r\n")); m != nil {
			current = strings.ReplaceAll(m[1], " ", "")
		}
		out[i] = current
	}
	return out
}

// tableHeader is the index of the (last) header line of table want, or -1.
func tableHeader(lines []string, want string) int {
	header := -1
	for i, l := range lines {
		if m := tableLine.FindStringSubmatch(strings.TrimRight(l, "\r\n")); m != nil && strings.ReplaceAll(m[1], " ", "") == want {
			header = i
		}
	}
	return header
}

// setInitrd is setAsset for the initrd key.
func setInitrd(content []byte, section, old, new string) ([]byte, error) {
	return setAsset(content, section, "initrd", old, new)
}

// setAsset rewrites the value of key (initrd or image) in [hypervisor.<section>] from
// old to new, touching nothing but that value on that one line, so every
// other byte the administrator wrote stays as it was. It refuses when the key
// is not written as a plain one-line string in that table (dotted keys,
// inline tables, escapes), rather than guessing.
func setAsset(content []byte, section, key, old, new string) ([]byte, error) {
	if strings.ContainsAny(new, "\"'\\\n") {
		return nil, fmt.Errorf("%s path %q contains a quote, backslash or newline; refusing to edit the Kata configuration", key, new)
	}
	line := assetLines[key]
	lines := strings.SplitAfter(string(content), "\n")
	tables := lineTables(lines)
	want := "hypervisor." + section
	found := -1
	for i, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		if tables[i] != want {
			continue
		}
		m := line.FindStringSubmatch(body)
		if m == nil {
			continue
		}
		val := m[3]
		if strings.HasPrefix(m[2], "'") {
			val = m[4]
		}
		if val != old {
			return nil, fmt.Errorf("[%s] %s is %q on line %d, expected %q", want, key, val, i+1, old)
		}
		if found >= 0 {
			return nil, fmt.Errorf("[%s] has %s on lines %d and %d", want, key, found+1, i+1)
		}
		found = i
		q := m[2][:1]
		lines[i] = m[1] + q + new + q + m[5] + l[len(body):]
	}
	if found < 0 {
		return nil, fmt.Errorf("no plain `%s = \"...\"` line in [%s]; edit the Kata configuration by hand or write the key on one line", key, want)
	}
	out := []byte(strings.Join(lines, ""))
	// The edit must change exactly that value and nothing else TOML sees.
	assets, err := guestAssets(out)
	if err != nil {
		return nil, fmt.Errorf("edited configuration does not parse: %w", err)
	}
	for _, a := range assets {
		got := a.Initrd
		if key == "image" {
			got = a.Image
		}
		if a.Hypervisor == section && got != new {
			return nil, fmt.Errorf("edited configuration has %s %q, want %q", key, got, new)
		}
	}
	return out, nil
}

// dropIn is one file of a configuration's config.d directory.
type dropIn struct {
	path string         // host path
	tree map[string]any // parsed
}

// dropInDir is where Kata reads drop-ins for the configuration at host
// path cfg (symlinks resolved): config.d beside it (Go runtime
// katautils.decodeDropIns; runtime-rs kata-types config/drop_in.rs).
func dropInDir(cfg string) string { return path.Join(path.Dir(cfg), "config.d") }

// dropIns reads the drop-ins of cfg in the order Kata applies them (file
// name order; later files win).
func (n *NodeInstaller) dropIns(cfg string) ([]dropIn, error) {
	dir := dropInDir(cfg)
	entries, err := os.ReadDir(n.onHost(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", dir, err)
	}
	var out []dropIn
	for _, e := range entries {
		p := path.Join(dir, e.Name())
		real, err := n.resolve(p)
		if err != nil {
			return nil, fmt.Errorf("drop-in %s: %w", p, err)
		}
		if fi, err := os.Stat(n.onHost(real)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(n.onHost(real))
		if err != nil {
			return nil, err
		}
		var tree map[string]any
		if err := toml.Unmarshal(b, &tree); err != nil {
			return nil, fmt.Errorf("drop-in %s does not parse (Kata would refuse it too): %w", p, err)
		}
		out = append(out, dropIn{path: p, tree: tree})
	}
	return out, nil
}

// mergeTOML applies over onto base as Kata merges drop-ins: tables merge key
// by key, any other value replaces.
func mergeTOML(base, over map[string]any) {
	for k, v := range over {
		bt, bok := base[k].(map[string]any)
		ot, ook := v.(map[string]any)
		if bok && ook {
			mergeTOML(bt, ot)
			continue
		}
		base[k] = v
	}
}

// effectiveAssets are the guest assets of content with the drop-ins
// applied, i.e. what Kata boots.
func effectiveAssets(content []byte, dis []dropIn) ([]guestAsset, error) {
	if len(dis) == 0 {
		return guestAssets(content)
	}
	var tree map[string]any
	if err := toml.Unmarshal(content, &tree); err != nil {
		return nil, fmt.Errorf("parse Kata configuration: %w", err)
	}
	for _, d := range dis {
		mergeTOML(tree, d.tree)
	}
	merged, err := toml.Marshal(tree)
	if err != nil {
		return nil, err
	}
	return guestAssets(merged)
}

// dropInSetting names the last drop-in that sets one of keys in
// [table], "" if none does.
func dropInSetting(dis []dropIn, table []string, keys ...string) string {
	found := ""
	for _, d := range dis {
		var t any = d.tree
		for _, k := range table {
			m, _ := t.(map[string]any)
			t = m[k]
		}
		m, _ := t.(map[string]any)
		for _, k := range keys {
			if _, ok := m[k]; ok {
				found = d.path + " sets " + k
			}
		}
	}
	return found
}
