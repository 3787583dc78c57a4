package kata

import (
	"fmt"
	"reflect"
	"regexp"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// runtime-rs (kata 4.1.0) reads `initdata` from a [hypervisor.<name>]
// section (SecurityInfo, flattened into the hypervisor table;
// src/libs/kata-types/src/config/hypervisor/mod.rs) as the raw initdata
// TOML document and hands it to the guest on a block device for every
// sandbox whose pod has no cc_init_data annotation of its own
// (VirtSandbox::prepare_initdata_device_config), with or without a TEE. The
// agent applies its policy.rego at start (src/agent/src/main.rs, features
// init-data and agent-policy). So runtime-rs image guests get the policy
// without touching the image. The Go runtime has no such key.

// initdataLineComment marks the line the installer adds, so uninstall
// removes exactly that line and nothing the administrator wrote.
const initdataLineComment = "# authbridge-node: restrictive Kata agent policy (node-agent kata uninstall removes this line)"

// runtimeConfig is the part of a configuration that tells the runtimes apart.
type runtimeConfig struct {
	Runtime struct {
		Name        string `toml:"name"`
		UsePassfdIO *bool  `toml:"use_passfd_io"`
	} `toml:"runtime"`
}

// isRuntimeRS reports a runtime-rs configuration: its [runtime] name is
// virt_container (configuration-*.toml.in of src/runtime-rs), or it
// configures Dragonball, which only runtime-rs has.
func isRuntimeRS(content []byte, assets []guestAsset) bool {
	var c runtimeConfig
	if err := toml.Unmarshal(content, &c); err == nil && c.Runtime.Name == "virt_container" {
		return true
	}
	for _, a := range assets {
		if a.Hypervisor == "dragonball" {
			return true
		}
	}
	return false
}

var initdataKeyLine = regexp.MustCompile(`^\s*initdata\s*=`)

// setInitdata puts `initdata = "<doc>"` with initdataLineComment right after
// the [hypervisor.<section>] header, or replaces the value of the line it
// added before. It refuses when the administrator set initdata themselves.
// The result is read back: section's initdata must be doc and every other
// key of the file unchanged.
func setInitdata(content []byte, section string, doc []byte) ([]byte, error) {
	lines := strings.SplitAfter(string(content), "\n")
	tables := lineTables(lines)
	want := "hypervisor." + section
	header, ours := tableHeader(lines, want), -1
	for i, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		if tables[i] != want || !initdataKeyLine.MatchString(body) {
			continue
		}
		if !strings.HasSuffix(body, initdataLineComment) {
			return nil, fmt.Errorf("[%s] already sets initdata (line %d); the installer leaves an administrator's initdata alone", want, i+1)
		}
		ours = i
	}
	if header < 0 {
		return nil, fmt.Errorf("no [%s] table header line; edit the Kata configuration by hand", want)
	}
	line := "initdata = " + tomlBasicString(string(doc)) + "  " + initdataLineComment + "\n"
	if ours >= 0 {
		lines[ours] = line
	} else {
		if !strings.HasSuffix(lines[header], "\n") {
			lines[header] += "\n"
		}
		lines = append(lines[:header+1], append([]string{line}, lines[header+1:]...)...)
	}
	out := []byte(strings.Join(lines, ""))
	if err := sameExceptInitdata(content, out, section, string(doc)); err != nil {
		return nil, err
	}
	return out, nil
}

// removeInitdata drops the line setInitdata added, if any.
func removeInitdata(content []byte) ([]byte, bool) {
	lines := strings.SplitAfter(string(content), "\n")
	var out []string
	removed := false
	for _, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		if initdataKeyLine.MatchString(body) && strings.HasSuffix(body, initdataLineComment) {
			removed = true
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "")), removed
}

// sameExceptInitdata parses both versions and checks that the only
// difference is [hypervisor.<section>] initdata = doc.
func sameExceptInitdata(before, after []byte, section, doc string) error {
	var b, a map[string]any
	if err := toml.Unmarshal(before, &b); err != nil {
		return fmt.Errorf("parse Kata configuration: %w", err)
	}
	if err := toml.Unmarshal(after, &a); err != nil {
		return fmt.Errorf("edited configuration does not parse: %w", err)
	}
	hv, _ := a["hypervisor"].(map[string]any)
	sec, _ := hv[section].(map[string]any)
	if got, _ := sec["initdata"].(string); got != doc {
		return fmt.Errorf("edited configuration reads back initdata of %d bytes, want the %d of the document", len(got), len(doc))
	}
	delete(sec, "initdata")
	if bh, ok := b["hypervisor"].(map[string]any); ok {
		if bs, ok := bh[section].(map[string]any); ok {
			delete(bs, "initdata")
		}
	}
	if !reflect.DeepEqual(a, b) {
		return fmt.Errorf("editing initdata in [hypervisor.%s] changed other keys; refusing", section)
	}
	return nil
}

// installInitdata handles a runtime-rs [hypervisor.<name>] section that
// boots a disk image: the policy goes in as the section's initdata (the
// image is not touched, so dm-verity images work too), if the image shows
// the agent enforces policies.
func (n *NodeInstaller) installInitdata(cfg string, a guestAsset, content []byte) (ConfigResult, []byte, error) {
	cr := ConfigResult{Config: cfg, Hypervisor: a.Hypervisor}
	skip := func(status, reason string) (ConfigResult, []byte, error) {
		cr.Status, cr.Reason = status, fmt.Sprintf("[hypervisor.%s] (runtime-rs) boots image %s: %s", a.Hypervisor, a.Image, reason)
		n.log().Warn("kata policy not installed for runtime-rs image guest", "config", cfg, "hypervisor", a.Hypervisor, "image", a.Image, "status", status, "reason", reason)
		return cr, content, nil
	}
	real, err := n.resolve(a.Image)
	if err != nil {
		return skip(StatusUnenforced, fmt.Sprintf("cannot read the image to tell whether its agent enforces policies (%v); treated as unenforced", err))
	}
	d, err := openDiskImage(n.onHost(real))
	if err != nil {
		return skip(StatusUnenforced, fmt.Sprintf("%v; cannot tell whether its agent enforces policies, treated as unenforced", err))
	}
	enforced, err := d.hasPolicyTree()
	if err != nil {
		return skip(StatusUnenforced, fmt.Sprintf("%v; treated as unenforced", err))
	}
	if !enforced {
		return skip(StatusUnenforced, unenforcedReason)
	}
	doc, err := BuildInitdata(InitdataOptions{Policy: n.policy(), PolicyName: "node policy"})
	if err != nil {
		return cr, nil, err
	}
	edited, err := setInitdata(content, a.Hypervisor, doc.TOML)
	if err != nil {
		return skip(StatusImageGuest, err.Error())
	}
	cr.Initdata = doc.DigestHex()
	cr.Backup = cfg + BackupSuffix
	cr.Status = StatusUnchanged
	if string(edited) != string(content) {
		cr.Status = StatusInstalled
		n.log().Info("kata policy installed as runtime-rs initdata", "config", cfg, "hypervisor", a.Hypervisor, "digest", cr.Initdata)
	}
	return cr, edited, nil
}

// passfdComment marks the use_passfd_io line the installer turned off; the
// original line follows it, so uninstall puts it back byte for byte.
const passfdComment = "  # authbridge-node: off, the policy refuses stdio over vsock (passfd); was: "

var passfdOnLine = regexp.MustCompile(`^\s*use_passfd_io\s*=\s*true\s*(#.*)?$`)

// passfdOff turns `use_passfd_io = true` in [runtime] off. runtime-rs then
// sends stdin/stdout/stderr ports 0 in CreateContainerRequest, which the
// policy requires (with passfd the container's stdio would bypass the
// ReadStream/WriteStream rules), instead of every container being refused.
func passfdOff(content []byte) ([]byte, bool, error) {
	lines := strings.SplitAfter(string(content), "\n")
	tables := lineTables(lines)
	changed := false
	for i, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		if tables[i] == "runtime" && passfdOnLine.MatchString(body) {
			lines[i] = "use_passfd_io = false" + passfdComment + body + l[len(body):]
			changed = true
		}
	}
	if !changed {
		return content, false, nil
	}
	out := []byte(strings.Join(lines, ""))
	var c runtimeConfig
	if err := toml.Unmarshal(out, &c); err != nil || c.Runtime.UsePassfdIO == nil || *c.Runtime.UsePassfdIO {
		return nil, false, fmt.Errorf("turning use_passfd_io off in [runtime] did not read back as false (%v); edit the Kata configuration by hand", err)
	}
	return out, true, nil
}

// passfdRestore puts back the lines passfdOff changed.
func passfdRestore(content []byte) ([]byte, bool) {
	lines := strings.SplitAfter(string(content), "\n")
	changed := false
	for i, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		if j := strings.Index(body, passfdComment); j >= 0 && strings.HasPrefix(body, "use_passfd_io = false") {
			lines[i] = body[j+len(passfdComment):] + l[len(body):]
			changed = true
		}
	}
	return []byte(strings.Join(lines, "")), changed
}

// annotationsComment marks an enable_annotations line the installer
// changed; the original line (or nothing) follows, for uninstall.
const annotationsComment = "  # authbridge-node: cc_init_data added (per-pod initdata override, a weakening); was: "

var annotationsLine = regexp.MustCompile(`^\s*enable_annotations\s*=\s*\[([^\]#]*)\]\s*(#.*)?$`)

// enableInitdataAnnotation adds "cc_init_data" to enable_annotations of
// [hypervisor.<section>] (inserting the key if the section has none), so a
// pod's io.katacontainers.config.hypervisor.cc_init_data annotation reaches
// the guest and its initdata policy replaces the node's. That is a
// weakening: whoever sets pod annotations (the pod's author, and the host)
// can then boot any policy, allow-all included. Only attestation binding the
// initdata digest makes such a policy trustworthy.
func enableInitdataAnnotation(content []byte, section string) ([]byte, bool, error) {
	lines := strings.SplitAfter(string(content), "\n")
	tables := lineTables(lines)
	want := "hypervisor." + section
	header, found := tableHeader(lines, want), false
	for i, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		if tables[i] != want || !strings.HasPrefix(strings.TrimSpace(body), "enable_annotations") {
			continue
		}
		m := annotationsLine.FindStringSubmatch(body)
		if m == nil {
			return nil, false, fmt.Errorf("[%s] enable_annotations (line %d) is not a one-line array; add \"cc_init_data\" by hand", want, i+1)
		}
		found = true
		if strings.Contains(m[1], `"cc_init_data"`) || strings.Contains(m[1], `'cc_init_data'`) {
			return content, false, nil
		}
		items := strings.TrimSpace(m[1])
		if items != "" {
			items += ", "
		}
		lines[i] = "enable_annotations = [" + items + `"cc_init_data"]` + annotationsComment + body + l[len(body):]
	}
	if header < 0 {
		return nil, false, fmt.Errorf("no [%s] table header line", want)
	}
	if !found {
		line := `enable_annotations = ["cc_init_data"]` + annotationsComment + "\n"
		lines = append(lines[:header+1], append([]string{line}, lines[header+1:]...)...)
	}
	out := []byte(strings.Join(lines, ""))
	var c struct {
		Hypervisor map[string]struct {
			EnableAnnotations []string `toml:"enable_annotations"`
		} `toml:"hypervisor"`
	}
	if err := toml.Unmarshal(out, &c); err != nil {
		return nil, false, fmt.Errorf("adding cc_init_data to enable_annotations of [%s]: %w", want, err)
	}
	ok := false
	for _, a := range c.Hypervisor[section].EnableAnnotations {
		ok = ok || a == "cc_init_data"
	}
	if !ok {
		return nil, false, fmt.Errorf("adding cc_init_data to enable_annotations of [%s] did not read back", want)
	}
	return out, true, nil
}

// restoreAnnotations undoes enableInitdataAnnotation.
func restoreAnnotations(content []byte) ([]byte, bool) {
	lines := strings.SplitAfter(string(content), "\n")
	var out []string
	changed := false
	for _, l := range lines {
		body := strings.TrimRight(l, "\r\n")
		if j := strings.Index(body, annotationsComment); j >= 0 && strings.HasPrefix(strings.TrimSpace(body), "enable_annotations") {
			changed = true
			if orig := body[j+len(annotationsComment):]; orig != "" {
				out = append(out, orig+l[len(body):])
			}
			continue
		}
		out = append(out, l)
	}
	return []byte(strings.Join(out, "")), changed
}
