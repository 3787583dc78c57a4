package kata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
	"github.com/kagenti/authbridge-node/policy"
)

// DefaultHostRoot is where the node agent's DaemonSet mounts the host's /.
const DefaultHostRoot = "/host"

// DefaultConfigGlobs are the host paths where Kata keeps its runtime
// configurations: distribution packages (/etc overrides /usr/share) and
// kata-deploy (/opt/kata, per-shim and runtime-rs layouts).
var DefaultConfigGlobs = []string{
	"/etc/kata-containers/configuration.toml",
	"/usr/share/defaults/kata-containers/configuration*.toml",
	"/opt/kata/share/defaults/kata-containers/configuration*.toml",
	"/opt/kata/share/defaults/kata-containers/runtime-rs/configuration*.toml",
	"/opt/kata/share/defaults/kata-containers/runtimes/*/configuration*.toml",
}

// Suffixes of the files the installer writes beside the admin's files.
const (
	BackupSuffix = ".authbridge-backup"
	initrdMarker = ".authbridge-restrictive"
)

// ErrNotKataNode means no Kata configuration was found under the host root.
var ErrNotKataNode = errors.New("no Kata configuration found on this node")

// ErrPeerPodsOnly means every Kata configuration found uses the remote
// hypervisor (a peer-pods worker): pods run in cloud VMs, not on this node,
// and get their policy through the peer-pods initdata. It wraps
// ErrNotKataNode: the node is not a local Kata node.
var ErrPeerPodsOnly = fmt.Errorf("%w: only [hypervisor.remote] (peer-pods) configurations; give peer-pods VMs the policy through initdata (node-agent kata peer-pods-configmap)", ErrNotKataNode)

// ErrImageGuestUnsupported means a Kata configuration boots its guest from a
// disk image, which the installer does not modify.
var ErrImageGuestUnsupported = errors.New("Kata guest boots from a disk image, not an initrd")

// ErrNoGuestChanged means no Kata configuration on the node could carry the
// policy (image or TEE guests only); Result.Configs says why for each.
var ErrNoGuestChanged = errors.New("no Kata guest on this node boots the restrictive policy")

// describeSkipped joins the reasons of the configurations left alone.
func describeSkipped(crs []ConfigResult) string {
	var parts []string
	for _, c := range crs {
		if c.Reason != "" {
			parts = append(parts, c.Config+": "+c.Reason)
		}
	}
	return strings.Join(parts, "; ")
}

// Config statuses in Result.
const (
	StatusInstalled  = "installed"
	StatusUnchanged  = "unchanged"
	StatusImageGuest = "unsupported-image-guest"
	// StatusMeasuredImage: an image guest whose root file system is pinned
	// by dm-verity or measured into a TEE's attestation; left alone.
	StatusMeasuredImage = "skipped-measured-image"
	// StatusDropIn: a config.d drop-in sets the boot asset, initdata or
	// use_passfd_io, overriding the main configuration the installer edits.
	StatusDropIn = "skipped-drop-in"
	// StatusUnenforced: the guest's agent is built without the policy
	// feature (no /etc/kata-opa in the guest): a policy file would be
	// ignored, so nothing is installed and the node must not claim one.
	StatusUnenforced = "unenforced"
	// StatusTEEGuest: a confidential_guest configuration left alone
	// (NodeInstaller.AllowTEEInitrd is false).
	StatusTEEGuest      = "skipped-tee-guest"
	teeGuestReason      = "the initrd is measured; use initdata (node-agent kata initdata), which the TEE binds to its attestation report. Appending the policy would change the launch measurement (confidential_guest = true) and break attestation against your reference values; pass --allow-tee-initrd only if you compute them from the modified initrd"
	measuredImageReason = "its root file system is pinned (dm-verity root hash in kernel_verity_params/kernel_params, a verity hash partition, or confidential_guest): changing it would stop the guest from booting or break attestation. Build the policy in at image build time (make kata-guest-policy, see docs/kata-secure-by-default.md) and update the root hash and reference values, or use initdata"
	unenforcedReason    = "the guest has no /etc/kata-opa, so its kata-agent was built without AGENT_POLICY=yes and enforces no policy (every request is allowed, the policy file is never read). Use a guest built with AGENT_POLICY=yes (osbuilder), e.g. the CoCo guest images, or build one with make kata-guest-policy"
	imageGuestFix       = "the installer only appends to initrds (rewriting a rootfs image would break its dm-verity root hash and measured boot). Fix: point this configuration at a Kata initrd (initrd = \".../kata-containers-initrd.img\" instead of image = ...) so the policy can be appended, or rebuild the guest image with osbuilder AGENT_POLICY=yes AGENT_POLICY_FILE=policy/default-restrictive.rego, and give confidential pods the policy through initdata (node-agent kata initdata)"
)

// ConfigResult is what Install did with one Kata configuration.
type ConfigResult struct {
	Config         string // host path of the configuration file (symlinks resolved)
	Hypervisor     string // the [hypervisor.<name>] section
	Status         string // StatusInstalled, StatusUnchanged, StatusImageGuest or StatusTEEGuest
	OriginalInitrd string // host path the configuration pointed at before
	Initrd         string // host path of the initrd carrying the policy
	OriginalImage  string // image guests: host path the configuration pointed at before
	Image          string // image guests: host path of the image copy carrying the policy
	Initdata       string // runtime-rs: digest (hex) of the initdata set in the section
	// InitdataAnnotation: cc_init_data is enabled in the section
	// (EnableInitdataAnnotation), so a pod's initdata replaces the policy.
	InitdataAnnotation bool
	Backup             string // host path of the configuration backup
	Reason             string // for the statuses that leave a guest alone: why and the fix
}

// Result is the outcome of Install.
type Result struct {
	// PolicySHA256 is the hex SHA-256 of the installed policy file, for the
	// Node annotation AnnotationKataPolicySHA256.
	PolicySHA256 string
	// Files are the host paths Install wrote or verified.
	Files []string
	// Configs lists every Kata configuration found, with what was done.
	Configs []ConfigResult
}

// Label is the value for LabelKataPolicy: restrictive when every
// configuration boots the policy into an agent that enforces it, partial
// when some could not be changed (image, measured or TEE guests) or do not
// enforce it, unenforced when none enforces it because the guests' agents
// lack the policy feature, "" when none could be changed.
func (r Result) Label() string {
	ok, bad, unenforced := 0, 0, 0
	for _, c := range r.Configs {
		switch c.Status {
		case StatusInstalled, StatusUnchanged:
			ok++
		case StatusUnenforced:
			unenforced++
		default:
			bad++
		}
	}
	switch {
	case ok > 0 && bad == 0 && unenforced == 0:
		return LabelValueRestrictive
	case ok > 0:
		return LabelValuePartial
	case unenforced > 0:
		return LabelValueUnenforced
	}
	return ""
}

// PublishedSHA256 is the value for AnnotationKataPolicySHA256: the policy's
// SHA-256 where some guest carries it into an agent that enforces it, ""
// otherwise (an unenforced or untouched node must not claim a policy).
func (r Result) PublishedSHA256() string {
	switch r.Label() {
	case LabelValueRestrictive, LabelValuePartial:
		return r.PolicySHA256
	}
	return ""
}

// NodeInstaller installs the restrictive agent policy into the Kata guest
// initrds of the node whose root filesystem is mounted at HostRoot.
type NodeInstaller struct {
	// HostRoot is the host's / as seen by the agent (DefaultHostRoot).
	HostRoot string
	// ConfigGlobs are host paths of Kata configurations (DefaultConfigGlobs).
	ConfigGlobs []string
	// Policy is the Rego to install (policy.Restrictive()).
	Policy []byte
	// Log receives one line per change (slog.Default()).
	Log *slog.Logger
	// AllowTEEInitrd also appends to the initrds of confidential_guest
	// configurations. Off by default: the initrd is measured, so the
	// change alters the launch measurement attestation checks.
	AllowTEEInitrd bool
	// EnableInitdataAnnotation adds cc_init_data to enable_annotations of
	// every section that carries the policy, so pods can bring their own
	// policy through initdata (the allow-exec debug preset, deny-logs, a
	// genpolicy policy). A weakening: whoever sets pod annotations, the host
	// included, can then boot any policy; logged at WARN and reported by
	// the node agent in authbridge_config_weakenings.
	EnableInitdataAnnotation bool
}

// Weakenings lists the installer options that weaken the policy, for the
// WARN log and the authbridge_config_weakenings metric.
func (n *NodeInstaller) Weakenings() []string {
	var w []string
	if n.EnableInitdataAnnotation {
		w = append(w, "kata.enableInitdataAnnotation")
	}
	if n.AllowTEEInitrd {
		w = append(w, "kata.allowTEEInitrd")
	}
	return w
}

func (n *NodeInstaller) root() string {
	if n.HostRoot == "" {
		return DefaultHostRoot
	}
	return n.HostRoot
}

func (n *NodeInstaller) log() *slog.Logger {
	if n.Log == nil {
		return slog.Default()
	}
	return n.Log
}

func (n *NodeInstaller) policy() []byte {
	if len(n.Policy) == 0 {
		return policy.Restrictive()
	}
	return n.Policy
}

// onHost maps a host path to the agent's view of it.
func (n *NodeInstaller) onHost(p string) string { return filepath.Join(n.root(), p) }

// resolve follows symlinks in host path p as the host would, keeping
// absolute link targets inside HostRoot. It returns a host path.
func (n *NodeInstaller) resolve(p string) (string, error) {
	todo := strings.Split(strings.TrimPrefix(path.Clean("/"+p), "/"), "/")
	cur := "/"
	for hops := 0; len(todo) > 0; {
		comp := todo[0]
		todo = todo[1:]
		if comp == "" || comp == "." {
			continue
		}
		next := path.Join(cur, comp)
		fi, err := os.Lstat(n.onHost(next))
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("resolve %s: too many symlinks", p)
		}
		target, err := os.Readlink(n.onHost(next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			cur = "/"
		}
		todo = append(strings.Split(target, "/"), todo...)
	}
	return cur, nil
}

// configs returns the host paths (symlinks resolved, deduplicated) of the
// Kata configurations present.
func (n *NodeInstaller) configs() ([]string, error) {
	globs := n.ConfigGlobs
	if len(globs) == 0 {
		globs = DefaultConfigGlobs
	}
	seen := map[string]bool{}
	var out []string
	for _, g := range globs {
		matches, err := filepath.Glob(n.onHost(g))
		if err != nil {
			return nil, fmt.Errorf("config glob %q: %w", g, err)
		}
		for _, m := range matches {
			hp := "/" + strings.TrimPrefix(strings.TrimPrefix(m, n.root()), "/")
			real, err := n.resolve(hp)
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					continue // dangling symlink: not a usable configuration
				}
				return nil, fmt.Errorf("resolve %s: %w", hp, err)
			}
			if fi, err := os.Stat(n.onHost(real)); err != nil || !fi.Mode().IsRegular() || seen[real] {
				continue
			}
			seen[real] = true
			out = append(out, real)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Detect reports whether this is a local Kata node, and the host path of
// the first local Kata configuration found. A node whose configurations
// all use the remote hypervisor (peer-pods worker) is not one.
func (n *NodeInstaller) Detect() (bool, string, error) {
	cfgs, err := n.localConfigs()
	if err != nil {
		return false, "", err
	}
	if len(cfgs) == 0 {
		return false, "", nil
	}
	return true, cfgs[0], nil
}

// localConfigs are the configurations with at least one hypervisor section
// that boots a guest on this node (not [hypervisor.remote]); a file that
// does not parse counts as local so Install reports the error.
func (n *NodeInstaller) localConfigs() ([]string, error) {
	cfgs, err := n.configs()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, cfg := range cfgs {
		content, err := os.ReadFile(n.onHost(cfg))
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", cfg, err)
		}
		assets, err := guestAssets(content)
		if err != nil {
			out = append(out, cfg)
			continue
		}
		for _, a := range assets {
			if !a.remote() {
				out = append(out, cfg)
				break
			}
		}
	}
	return out, nil
}

// generatedInitrd is the name of the policy-carrying copy of an initrd.
func generatedInitrd(orig string) string {
	dir, base := path.Split(orig)
	ext := path.Ext(base)
	return dir + strings.TrimSuffix(base, ext) + initrdMarker + ext
}

// originalOf reverses generatedInitrd; ok is false for a path it did not make.
func originalOf(p string) (string, bool) {
	dir, base := path.Split(p)
	if !strings.Contains(base, initrdMarker) {
		return "", false
	}
	return dir + strings.Replace(base, initrdMarker, "", 1), true
}

// Install appends the policy to each initrd-based Kata configuration's
// initrd (as a new file beside it), points the configuration at it and keeps
// a backup of the configuration. The original initrd is never written.
// Running it again with the same policy changes nothing. Image-based guests
// are reported in Result.Configs with StatusImageGuest, TEE guests with
// StatusTEEGuest (unless AllowTEEInitrd); if no configuration could be
// changed the error wraps ErrNoGuestChanged (and ErrImageGuestUnsupported
// when an image guest is why). A node with only [hypervisor.remote]
// configurations gets ErrPeerPodsOnly, which wraps ErrNotKataNode.
func (n *NodeInstaller) Install(ctx context.Context) (Result, error) {
	pol := n.policy()
	if err := ValidatePolicy("node policy", pol); err != nil {
		return Result{}, err
	}
	sum := sha256.Sum256(pol)
	res := Result{PolicySHA256: hex.EncodeToString(sum[:])}
	all, err := n.configs()
	if err != nil {
		return res, err
	}
	if len(all) == 0 {
		return res, fmt.Errorf("%w under %s (looked at %s)", ErrNotKataNode, n.root(), strings.Join(n.globs(), ", "))
	}
	cfgs, err := n.localConfigs()
	if err != nil {
		return res, err
	}
	if len(cfgs) == 0 {
		return res, fmt.Errorf("%w (%s)", ErrPeerPodsOnly, strings.Join(all, ", "))
	}
	member, err := PolicyCPIO(pol)
	if err != nil {
		return res, err
	}
	for _, cfg := range cfgs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		crs, err := n.installConfig(cfg, member)
		if err != nil {
			return res, fmt.Errorf("install policy for %s: %w", cfg, err)
		}
		for _, cr := range crs {
			res.Configs = append(res.Configs, cr)
			if cr.Status == StatusInstalled || cr.Status == StatusUnchanged {
				res.Files = append(res.Files, cr.Config, cr.Backup)
				for _, asset := range []string{cr.Initrd, cr.Image} {
					if asset != "" {
						res.Files = append(res.Files, asset)
					}
				}
			}
		}
	}
	if res.Label() == "" {
		err := fmt.Errorf("%w in %s: %s", ErrNoGuestChanged, strings.Join(cfgs, ", "), describeSkipped(res.Configs))
		for _, c := range res.Configs {
			if c.Status == StatusImageGuest || c.Status == StatusMeasuredImage {
				return res, errors.Join(err, ErrImageGuestUnsupported)
			}
		}
		return res, err
	}
	return res, nil
}

func (n *NodeInstaller) globs() []string {
	if len(n.ConfigGlobs) == 0 {
		return DefaultConfigGlobs
	}
	return n.ConfigGlobs
}

func (n *NodeInstaller) installConfig(cfg string, member []byte) ([]ConfigResult, error) {
	original, err := os.ReadFile(n.onHost(cfg))
	if err != nil {
		return nil, err
	}
	// What Kata boots is the configuration with its config.d drop-ins
	// applied; the installer edits only the main file, so a section whose
	// boot asset or initdata a drop-in sets is left alone (the drop-in
	// would override the edit).
	dis, err := n.dropIns(cfg)
	if err != nil {
		return nil, err
	}
	assets, err := effectiveAssets(original, dis)
	if err != nil {
		return nil, err
	}
	// All sections' edits go into one new content; the backup is the file
	// as it was before any of them (written once, below).
	content := original
	runtimeRS := isRuntimeRS(original, assets)
	passfdByDropIn := dropInSetting(dis, []string{"runtime"}, "use_passfd_io")
	var out []ConfigResult
	for _, a := range assets {
		cr := ConfigResult{Config: cfg, Hypervisor: a.Hypervisor}
		if a.remote() || (a.Initrd == "" && a.Image == "") {
			continue // peer-pods: no local guest asset
		}
		if by := dropInSetting(dis, []string{"hypervisor", a.Hypervisor}, "initrd", "image", "initdata"); by != "" || (runtimeRS && passfdByDropIn != "") {
			if by == "" {
				by = passfdByDropIn
			}
			cr.Status = StatusDropIn
			cr.Reason = fmt.Sprintf("[hypervisor.%s]: %s, which overrides the main configuration the installer edits; move that key into %s (or remove it) and the next check installs the policy", a.Hypervisor, by, cfg)
			n.log().Warn("kata policy not installed: a config.d drop-in overrides the keys the installer sets", "config", cfg, "hypervisor", a.Hypervisor, "dropin", by)
			out = append(out, cr)
			continue
		}
		if a.Confidential && !n.AllowTEEInitrd {
			cr.Status = StatusTEEGuest
			cr.Reason = fmt.Sprintf("[hypervisor.%s] is a TEE guest: %s", a.Hypervisor, teeGuestReason)
			n.log().Warn("kata policy not installed for TEE guest: the initrd is measured; use initdata", "config", cfg, "hypervisor", a.Hypervisor)
			out = append(out, cr)
			continue
		}
		if a.Initrd == "" && runtimeRS {
			var cr ConfigResult
			cr, content, err = n.installInitdata(cfg, a, content)
			if err != nil {
				return nil, err
			}
			out = append(out, cr)
			continue
		}
		if a.Initrd == "" {
			var ic imageChange
			ic, content, err = n.installImage(cfg, a, content)
			if err != nil {
				return nil, err
			}
			out = append(out, ic.ConfigResult)
			continue
		}
		orig, ours := originalOf(a.Initrd)
		if !ours {
			orig = a.Initrd
		}
		if unenforced, err := n.initrdUnenforced(orig); err != nil || unenforced {
			cr.Status, cr.Reason = StatusUnenforced, fmt.Sprintf("[hypervisor.%s] initrd %s: %s", a.Hypervisor, orig, unenforcedReason)
			if err != nil {
				cr.Reason = fmt.Sprintf("[hypervisor.%s] initrd %s: %v; treated as unenforced", a.Hypervisor, orig, err)
			}
			n.log().Warn("kata policy not installed: the guest's agent does not enforce policies", "config", cfg, "hypervisor", a.Hypervisor, "initrd", orig, "reason", cr.Reason)
			out = append(out, cr)
			continue
		}
		cr.OriginalInitrd = orig
		cr.Initrd = generatedInitrd(orig)
		cr.Backup = cfg + BackupSuffix

		// Compute the edit first: nothing is written if it cannot be made.
		if !ours {
			if content, err = setInitrd(content, a.Hypervisor, a.Initrd, cr.Initrd); err != nil {
				return nil, err
			}
		}
		changed, err := n.writeInitrd(orig, cr.Initrd, member)
		if err != nil {
			return nil, err
		}
		cr.Status = StatusUnchanged
		if changed || !ours {
			cr.Status = StatusInstalled
			n.log().Info("kata policy installed", "config", cfg, "hypervisor", a.Hypervisor, "initrd", cr.Initrd, "original", orig)
		}
		out = append(out, cr)
	}
	if runtimeRS && policyInstalled(out) {
		if content, _, err = passfdOff(content); err != nil {
			return nil, err
		}
	}
	if n.EnableInitdataAnnotation {
		for i, cr := range out {
			if cr.Status != StatusInstalled && cr.Status != StatusUnchanged {
				continue
			}
			var changed bool
			if content, changed, err = enableInitdataAnnotation(content, cr.Hypervisor); err != nil {
				return nil, err
			}
			out[i].InitdataAnnotation = true
			if changed {
				out[i].Status = StatusInstalled
				n.log().Warn("kata: pods may replace the node's agent policy with their own initdata (cc_init_data enabled); whoever sets pod annotations, the host included, can boot any policy", "config", cfg, "hypervisor", cr.Hypervisor)
			}
		}
	}
	if !bytes.Equal(content, original) {
		// Back up the configuration as it was (after a Kata upgrade
		// rewrote it, that is the new baseline), then write the edits.
		if err := atomicfile.WriteLike(n.onHost(cfg+BackupSuffix), n.onHost(cfg), bytesWriter(original)); err != nil {
			return nil, fmt.Errorf("back up configuration: %w", err)
		}
		if err := atomicfile.WriteLike(n.onHost(cfg), n.onHost(cfg), bytesWriter(content)); err != nil {
			return nil, fmt.Errorf("write configuration: %w", err)
		}
	}
	return out, nil
}

// writeInitrd makes dst = original bytes + member unless it already is.
func (n *NodeInstaller) writeInitrd(orig, dst string, member []byte) (bool, error) {
	realOrig, err := n.resolve(orig)
	if err != nil {
		return false, fmt.Errorf("original initrd %s: %w", orig, err)
	}
	want, err := hashOf(n.onHost(realOrig), member)
	if err != nil {
		return false, fmt.Errorf("original initrd %s: %w", orig, err)
	}
	if got, err := hashOf(n.onHost(dst), nil); err == nil && bytes.Equal(got, want) {
		return false, nil
	}
	f, err := os.Open(n.onHost(realOrig))
	if err != nil {
		return false, err
	}
	defer f.Close()
	return true, atomicfile.WriteLike(n.onHost(dst), n.onHost(realOrig), func(w io.Writer) error {
		if _, err := io.Copy(w, f); err != nil {
			return err
		}
		_, err := w.Write(member)
		return err
	})
}

// Uninstall points every configuration the installer edited back at its
// original initrd (the reverse one-line edit, so the file is byte-identical
// to the backup unless the administrator changed it since) and removes the
// generated initrds and the backups. Running guests keep the policy they
// booted with until their pods restart.
func (n *NodeInstaller) Uninstall(ctx context.Context) error {
	cfgs, err := n.configs()
	if err != nil {
		return err
	}
	var errs []error
	for _, cfg := range cfgs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := n.uninstallConfig(cfg); err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", cfg, err))
		}
	}
	return errors.Join(errs...)
}

func (n *NodeInstaller) uninstallConfig(cfg string) error {
	content, err := os.ReadFile(n.onHost(cfg))
	if err != nil {
		return err
	}
	assets, err := guestAssets(content)
	if err != nil {
		return err
	}
	var generated []string
	restored, removed := removeInitdata(content)
	restored, passfd := passfdRestore(restored)
	restored, annotations := restoreAnnotations(restored)
	if removed || passfd || annotations {
		content = restored
		if err := atomicfile.WriteLike(n.onHost(cfg), n.onHost(cfg), bytesWriter(content)); err != nil {
			return err
		}
		n.log().Info("kata policy: marked configuration lines restored", "config", cfg, "initdata", removed, "passfd", passfd, "annotations", annotations)
	}
	for _, a := range assets {
		key, cur := "initrd", a.Initrd
		if cur == "" {
			key, cur = "image", a.Image
		}
		orig, ours := originalOf(cur)
		if !ours {
			continue
		}
		restored, err := setAsset(content, a.Hypervisor, key, cur, orig)
		if err != nil {
			return err
		}
		content = restored
		generated = append(generated, cur)
		if key == "image" {
			generated = append(generated, cur+imageStampSuffix)
		}
		if err := atomicfile.WriteLike(n.onHost(cfg), n.onHost(cfg), bytesWriter(content)); err != nil {
			return err
		}
		n.log().Info("kata policy uninstalled", "config", cfg, "hypervisor", a.Hypervisor, key, orig)
	}
	for _, g := range generated {
		if err := os.Remove(n.onHost(g)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if err := os.Remove(n.onHost(cfg + BackupSuffix)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// hashOf is the SHA-256 of the file's bytes followed by extra.
func hashOf(file string, extra []byte) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	h.Write(extra)
	return h.Sum(nil), nil
}

// bytesWriter is a WriteLike content function for data already in memory.
func bytesWriter(data []byte) func(io.Writer) error {
	return func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	}
}

// policyInstalled reports whether any section of a configuration now boots
// the policy.
func policyInstalled(crs []ConfigResult) bool {
	for _, c := range crs {
		if c.Status == StatusInstalled || c.Status == StatusUnchanged {
			return true
		}
	}
	return false
}
