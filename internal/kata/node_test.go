package kata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/kagenti/authbridge-node/policy"
)

// qemuConfig is shaped like kata-deploy's configuration-qemu.toml with the
// guest switched to the initrd (comments, other tables, drop-in keys).
const qemuConfig = `# Copyright (c) 2017-2019 Intel Corporation
#
# SPDX-License-Identifier: Apache-2.0
#

# XXX: WARNING: this file is auto-generated.

[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
# image = "/opt/kata/share/kata-containers/kata-containers.img"
initrd = "/opt/kata/share/kata-containers/kata-containers-initrd.img"   # admin: switched to initrd
machine_type = "q35"

# List of valid annotation names for the hypervisor
enable_annotations = ["enable_iommu", "virtio_fs_extra_args", "kernel_params"]
valid_hypervisor_paths = ["/opt/kata/bin/qemu-system-x86_64"]
kernel_params = "agent.log=debug initrd=ignored"
default_vcpus = 1
default_memory = 2048

[factory]
initrd = "not a hypervisor key"

[agent.kata]
dial_timeout = 45

[runtime]
internetworking_model="tcfilter"
disable_guest_seccomp=true
`

const tdxConfig = `[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinuz-confidential.container"
image = "/opt/kata/share/kata-containers/kata-containers-confidential.img"
machine_type = "q35"
kernel_verity_params = "root_hash=abc"

[runtime]
internetworking_model="tcfilter"
`

const remoteConfig = `[hypervisor.remote]
remote_hypervisor_socket = "/run/peerpod/hypervisor.sock"
`

type host struct {
	root     string
	cfg      string // host path of configuration-qemu.toml
	initrd   []byte
	origPath string // host path the configuration names (a symlink)
	realPath string // what it points at
}

func newHost(t *testing.T, withTDX bool) *host {
	t.Helper()
	h := &host{root: t.TempDir(),
		cfg:      "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml",
		origPath: "/opt/kata/share/kata-containers/kata-containers-initrd.img",
		realPath: "/opt/kata/share/kata-containers/kata-ubuntu-noble.initrd",
	}
	h.initrd, _ = fakeInitrd(t)
	h.write(t, h.cfg, []byte(qemuConfig), 0o644)
	h.write(t, h.realPath, h.initrd, 0o644)
	// kata-deploy ships the initrd as an absolute symlink: it must resolve
	// inside the host root, not the agent's own filesystem.
	if err := os.Symlink(h.realPath, h.on(h.origPath)); err != nil {
		t.Fatal(err)
	}
	// configuration.toml -> configuration-qemu.toml: one file, edited once.
	if err := os.Symlink("configuration-qemu.toml", h.on("/opt/kata/share/defaults/kata-containers/configuration.toml")); err != nil {
		t.Fatal(err)
	}
	h.write(t, "/opt/kata/share/defaults/kata-containers/configuration-remote.toml", []byte(remoteConfig), 0o644)
	if withTDX {
		h.write(t, "/opt/kata/share/defaults/kata-containers/configuration-qemu-tdx.toml", []byte(tdxConfig), 0o644)
	}
	return h
}

func (h *host) on(p string) string { return filepath.Join(h.root, p) }

func (h *host) write(t *testing.T, p string, b []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(h.on(p)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(h.on(p), b, mode); err != nil {
		t.Fatal(err)
	}
}

func (h *host) read(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(h.on(p))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDetect(t *testing.T) {
	h := newHost(t, false)
	ok, cfg, err := (&NodeInstaller{HostRoot: h.root}).Detect()
	if err != nil || !ok || cfg != h.cfg {
		t.Fatalf("Detect() = %v, %q, %v; want true, %q", ok, cfg, err, h.cfg)
	}
	ok, _, err = (&NodeInstaller{HostRoot: t.TempDir()}).Detect()
	if err != nil || ok {
		t.Fatalf("Detect() on a non-Kata host = %v, %v", ok, err)
	}
	// The distribution layout: /etc overrides /usr/share.
	other := t.TempDir()
	p := filepath.Join(other, "etc/kata-containers/configuration.toml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(qemuConfig), 0o644)
	if ok, cfg, _ := (&NodeInstaller{HostRoot: other}).Detect(); !ok || cfg != "/etc/kata-containers/configuration.toml" {
		t.Fatalf("Detect() /etc layout = %v, %q", ok, cfg)
	}
}

func TestInstallIdempotentUninstallRestores(t *testing.T) {
	h := newHost(t, false)
	ctx := context.Background()
	n := &NodeInstaller{HostRoot: h.root}

	res, err := n.Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(policy.Restrictive())
	if res.PolicySHA256 != hex.EncodeToString(sum[:]) {
		t.Errorf("PolicySHA256 = %s", res.PolicySHA256)
	}
	if res.Label() != LabelValueRestrictive {
		t.Errorf("Label() = %q, want %q (remote config has no local guest and is skipped)", res.Label(), LabelValueRestrictive)
	}
	if len(res.Configs) != 1 {
		t.Fatalf("Configs = %+v, want one (configuration.toml is a symlink to the same file)", res.Configs)
	}
	c := res.Configs[0]
	wantInitrd := "/opt/kata/share/kata-containers/kata-containers-initrd.authbridge-restrictive.img"
	if c.Status != StatusInstalled || c.Initrd != wantInitrd || c.OriginalInitrd != h.origPath || c.Backup != h.cfg+BackupSuffix {
		t.Fatalf("ConfigResult = %+v", c)
	}

	// The configuration differs from the original on the initrd line only.
	edited := strings.Split(string(h.read(t, h.cfg)), "\n")
	orig := strings.Split(qemuConfig, "\n")
	if len(edited) != len(orig) {
		t.Fatalf("line count changed: %d -> %d", len(orig), len(edited))
	}
	for i := range orig {
		if edited[i] == orig[i] {
			continue
		}
		want := `initrd = "` + wantInitrd + `"   # admin: switched to initrd`
		if !strings.HasPrefix(orig[i], "initrd = \"/opt") || edited[i] != want {
			t.Errorf("line %d changed:\n- %s\n+ %s", i+1, orig[i], edited[i])
		}
	}
	if b := h.read(t, c.Backup); string(b) != qemuConfig {
		t.Error("backup differs from the original configuration")
	}
	// The original initrd is untouched; the new one is original + policy.
	if b := h.read(t, h.realPath); !bytes.Equal(b, h.initrd) {
		t.Error("original initrd was modified")
	}
	if fi, _ := os.Lstat(h.on(h.origPath)); fi.Mode()&os.ModeSymlink == 0 {
		t.Error("original initrd symlink was replaced")
	}
	member, _ := PolicyCPIO(policy.Restrictive())
	if b := h.read(t, wantInitrd); !bytes.Equal(b, append(append([]byte(nil), h.initrd...), member...)) {
		t.Error("generated initrd is not original + policy archive")
	}
	if fi, _ := os.Stat(h.on(h.cfg)); fi.Mode().Perm() != 0o644 {
		t.Errorf("configuration mode %v, want 0644 kept", fi.Mode())
	}

	// Idempotent: nothing changes on the second run.
	st1, _ := os.Stat(h.on(wantInitrd))
	cfg1 := h.read(t, h.cfg)
	res2, err := n.Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Configs[0].Status != StatusUnchanged || res2.PolicySHA256 != res.PolicySHA256 {
		t.Errorf("second Install = %+v", res2.Configs[0])
	}
	st2, _ := os.Stat(h.on(wantInitrd))
	if !os.SameFile(st1, st2) || !bytes.Equal(cfg1, h.read(t, h.cfg)) {
		t.Error("second Install rewrote files")
	}
	if b := h.read(t, c.Backup); string(b) != qemuConfig {
		t.Error("second Install overwrote the backup with the edited configuration")
	}

	// A new policy replaces the generated initrd, the configuration stays.
	logs, _ := policy.Preset(policy.PresetDenyLogs)
	res3, err := (&NodeInstaller{HostRoot: h.root, Policy: logs}).Install(ctx)
	if err != nil || res3.Configs[0].Status != StatusInstalled {
		t.Fatalf("Install(deny-logs) = %+v, %v", res3.Configs, err)
	}
	member, _ = PolicyCPIO(logs)
	if b := h.read(t, wantInitrd); !bytes.Equal(b[len(h.initrd):], member) || !bytes.Equal(cfg1, h.read(t, h.cfg)) {
		t.Error("policy change not applied as expected")
	}

	// Uninstall restores byte for byte and cleans up.
	if err := n.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if b := h.read(t, h.cfg); string(b) != qemuConfig {
		t.Errorf("configuration not restored byte-identical:\n%s", b)
	}
	for _, p := range []string{wantInitrd, c.Backup} {
		if _, err := os.Stat(h.on(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind: %v", p, err)
		}
	}
	if b := h.read(t, h.realPath); !bytes.Equal(b, h.initrd) {
		t.Error("original initrd changed")
	}
	// Uninstall twice is harmless.
	if err := n.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestInstallImageGuests(t *testing.T) {
	h := newHost(t, true)
	res, err := (&NodeInstaller{HostRoot: h.root}).Install(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if res.Label() != LabelValuePartial {
		t.Errorf("Label() = %q, want %q with one image-based configuration", res.Label(), LabelValuePartial)
	}
	var img *ConfigResult
	for i := range res.Configs {
		if res.Configs[i].Status == StatusMeasuredImage {
			img = &res.Configs[i]
		}
	}
	// kernel_verity_params: the image is pinned by dm-verity.
	if img == nil || !strings.Contains(img.Reason, "kata-containers-confidential.img") || !strings.Contains(img.Reason, "initdata") || !strings.Contains(img.Reason, "dm-verity") {
		t.Fatalf("measured image guest not reported with its image and the fix: %+v", res.Configs)
	}
	if b := h.read(t, "/opt/kata/share/defaults/kata-containers/configuration-qemu-tdx.toml"); string(b) != tdxConfig {
		t.Error("image-based configuration was modified")
	}

	// Only image-based configurations: a clear error, nothing written.
	only := t.TempDir()
	p := filepath.Join(only, "opt/kata/share/defaults/kata-containers/configuration-qemu-tdx.toml")
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(tdxConfig), 0o644)
	res, err = (&NodeInstaller{HostRoot: only}).Install(context.Background())
	if !errors.Is(err, ErrImageGuestUnsupported) || !strings.Contains(err.Error(), "make kata-guest-policy") || res.Label() != "" {
		t.Fatalf("Install(image only) = %q, %v", res.Label(), err)
	}
	if _, err := (&NodeInstaller{HostRoot: t.TempDir()}).Install(context.Background()); !errors.Is(err, ErrNotKataNode) {
		t.Fatalf("Install(no Kata) err = %v, want ErrNotKataNode", err)
	}
}

func TestInstallRefusesUnusualConfig(t *testing.T) {
	h := newHost(t, false)
	// A multi-line string delimiter TOML accepts but a one-line edit does
	// not rewrite.
	odd := strings.Replace(qemuConfig, `initrd = "/opt/kata/share/kata-containers/kata-containers-initrd.img"`, `initrd = """/opt/kata/share/kata-containers/kata-containers-initrd.img"""`, 1)
	h.write(t, h.cfg, []byte(odd), 0o644)
	_, err := (&NodeInstaller{HostRoot: h.root}).Install(context.Background())
	if err == nil {
		t.Fatal("Install accepted a configuration it cannot edit line by line")
	}
	if !strings.Contains(err.Error(), "no plain") {
		t.Errorf("err = %v, want it to say the key is not a plain one-line string", err)
	}
	if b := h.read(t, h.cfg); string(b) != odd {
		t.Error("configuration modified despite the error")
	}
	for _, p := range []string{h.cfg + BackupSuffix, "/opt/kata/share/kata-containers/kata-containers-initrd.authbridge-restrictive.img"} {
		if _, err := os.Stat(h.on(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s written although the configuration could not be edited", p)
		}
	}
}

func TestInstallRefusesInvalidPolicy(t *testing.T) {
	h := newHost(t, false)
	_, err := (&NodeInstaller{HostRoot: h.root, Policy: []byte("package agent_policy\nExecProcessRequest {")}).Install(context.Background())
	if err == nil || !strings.Contains(err.Error(), "parse") {
		t.Fatalf("err = %v", err)
	}
	if b := h.read(t, h.cfg); string(b) != qemuConfig {
		t.Error("configuration modified")
	}
}

// twoInitrdConfig has two hypervisor sections booting initrds, as a
// hand-merged configuration can: both are edited, the backup is the file
// as it was before either edit.
const twoInitrdConfig = `[hypervisor.clh]
path = "/opt/kata/bin/cloud-hypervisor"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
initrd = "/opt/kata/share/kata-containers/kata-containers-initrd.img"

[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
initrd = "/opt/kata/share/kata-containers/kata-containers-initrd.img"
machine_type = "q35"

[runtime]
internetworking_model="tcfilter"
`

func TestBackupOnceWithTwoInitrdSections(t *testing.T) {
	h := newHost(t, false)
	h.write(t, h.cfg, []byte(twoInitrdConfig), 0o644)
	n := &NodeInstaller{HostRoot: h.root}
	res, err := n.Install(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Configs) != 2 || res.Configs[0].Status != StatusInstalled || res.Configs[1].Status != StatusInstalled {
		t.Fatalf("Configs = %+v, want both sections installed", res.Configs)
	}
	if b := h.read(t, h.cfg+BackupSuffix); string(b) != twoInitrdConfig {
		t.Fatalf("backup holds edited content:\n%s", b)
	}
	if got := strings.Count(string(h.read(t, h.cfg)), initrdMarker); got != 2 {
		t.Errorf("%d initrd lines point at the policy initrd, want 2", got)
	}
	// Second run: the backup still holds the pre-install file.
	if _, err := n.Install(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := h.read(t, h.cfg+BackupSuffix); string(b) != twoInitrdConfig {
		t.Fatal("second Install overwrote the backup")
	}
	if err := n.Uninstall(context.Background()); err != nil {
		t.Fatal(err)
	}
	if b := h.read(t, h.cfg); string(b) != twoInitrdConfig {
		t.Errorf("not restored:\n%s", b)
	}
}

func TestPeerPodsWorkerIsNotKataNode(t *testing.T) {
	root := t.TempDir()
	for _, p := range []string{
		"opt/kata/share/defaults/kata-containers/configuration-remote.toml",
		"opt/kata/share/defaults/kata-containers/runtime-rs/configuration-remote.toml",
	} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(remoteConfig), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	n := &NodeInstaller{HostRoot: root}
	if ok, cfg, err := n.Detect(); ok || err != nil {
		t.Fatalf("Detect() on a peer-pods worker = %v, %q, %v; want false", ok, cfg, err)
	}
	res, err := n.Install(context.Background())
	if !errors.Is(err, ErrNotKataNode) || !errors.Is(err, ErrPeerPodsOnly) {
		t.Fatalf("Install err = %v, want ErrPeerPodsOnly (an ErrNotKataNode)", err)
	}
	if errors.Is(err, ErrImageGuestUnsupported) || errors.Is(err, ErrNoGuestChanged) || res.Label() != "" {
		t.Fatalf("peer-pods worker reported as an image/TEE guest problem: %v, label %q", err, res.Label())
	}
	if !strings.Contains(err.Error(), "initdata") {
		t.Errorf("err = %v, want it to point at initdata", err)
	}
}

// tdxInitrdConfig is kata's configuration-qemu-nvidia-gpu-tdx shape: a TEE
// guest booting an initrd.
const tdxInitrdConfig = `[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinuz-confidential.container"
initrd = "/opt/kata/share/kata-containers/kata-containers-initrd.img"
machine_type = "q35"
confidential_guest = true
firmware = "/opt/kata/share/ovmf/OVMF.inteltdx.fd"

[runtime]
internetworking_model="tcfilter"
`

func TestTEEInitrdSkippedUnlessAllowed(t *testing.T) {
	const tdx = "/opt/kata/share/defaults/kata-containers/configuration-qemu-tdx.toml"
	h := newHost(t, false)
	h.write(t, tdx, []byte(tdxInitrdConfig), 0o644)
	res, err := (&NodeInstaller{HostRoot: h.root}).Install(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var tee *ConfigResult
	for i := range res.Configs {
		if res.Configs[i].Config == tdx {
			tee = &res.Configs[i]
		}
	}
	if tee == nil || tee.Status != StatusTEEGuest || !strings.Contains(tee.Reason, "the initrd is measured; use initdata") {
		t.Fatalf("TEE config result = %+v", tee)
	}
	if b := h.read(t, tdx); string(b) != tdxInitrdConfig {
		t.Error("TEE configuration modified")
	}
	if _, err := os.Stat(h.on(tdx + BackupSuffix)); !errors.Is(err, os.ErrNotExist) {
		t.Error("TEE configuration backed up although untouched")
	}
	if res.Label() != LabelValuePartial {
		t.Errorf("Label() = %q, want partial (TEE guests do not boot the policy)", res.Label())
	}

	// Only the TEE configuration: nothing installed, error says why.
	only := t.TempDir()
	p := filepath.Join(only, tdx)
	os.MkdirAll(filepath.Dir(p), 0o755)
	os.WriteFile(p, []byte(tdxInitrdConfig), 0o644)
	if _, err := (&NodeInstaller{HostRoot: only}).Install(context.Background()); !errors.Is(err, ErrNoGuestChanged) || !strings.Contains(err.Error(), "measured") {
		t.Fatalf("Install(TEE only) err = %v", err)
	}

	// Explicitly allowed: installed like any initrd.
	res, err = (&NodeInstaller{HostRoot: h.root, AllowTEEInitrd: true}).Install(context.Background())
	if err != nil || res.Label() != LabelValueRestrictive {
		t.Fatalf("Install(AllowTEEInitrd) = %q, %v", res.Label(), err)
	}
	if !strings.Contains(string(h.read(t, tdx)), initrdMarker) {
		t.Error("TEE configuration not pointed at the policy initrd with AllowTEEInitrd")
	}
}

// config.d drop-ins are merged as Kata merges them (file name order, table
// keys merged, later files win): a TEE switch in a drop-in makes the guest a
// TEE guest, a drop-in that sets the boot asset leaves the section alone
// (it would override the edit), an unrelated drop-in changes nothing.
func TestInstallReadsDropIns(t *testing.T) {
	const dir = "/opt/kata/share/defaults/kata-containers/config.d/"
	cases := []struct {
		name, file, body string
		status, reason   string
	}{
		{"unrelated key", "10-vcpus.toml", "[hypervisor.qemu]\ndefault_vcpus = 2\n", StatusInstalled, ""},
		{"TEE switch", "50-tee.toml", "[hypervisor.qemu]\nconfidential_guest = true\n", StatusTEEGuest, "TEE guest"},
		{"boot asset", "60-image.toml", "[hypervisor.qemu]\nimage = \"/opt/kata/share/kata-containers/kata-containers.img\"\n", StatusDropIn, dir + "60-image.toml sets image"},
		{"initdata", "70-initdata.toml", "[hypervisor.qemu]\ninitdata = \"\"\n", StatusDropIn, "sets initdata"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := newHost(t, false)
			h.write(t, dir+c.file, []byte(c.body), 0o644)
			res, err := (&NodeInstaller{HostRoot: h.root}).Install(context.Background())
			if len(res.Configs) != 1 || res.Configs[0].Status != c.status || !strings.Contains(res.Configs[0].Reason, c.reason) {
				t.Fatalf("Install = %+v, %v; want %s with %q", res.Configs, err, c.status, c.reason)
			}
			if b := h.read(t, dir+c.file); string(b) != c.body {
				t.Error("drop-in modified")
			}
			if c.status != StatusInstalled {
				if b := h.read(t, h.cfg); string(b) != qemuConfig {
					t.Error("configuration modified for a section the installer left alone")
				}
				if res.Label() != "" {
					t.Errorf("label %q for a node whose only guest was left alone", res.Label())
				}
			}
		})
	}
}

// The per-pod override option: cc_init_data is added to enable_annotations
// of the sections that carry the policy (read back with the TOML parser),
// reported, counted as a weakening, and removed byte for byte.
func TestEnableInitdataAnnotation(t *testing.T) {
	h := newHost(t, false)
	n := &NodeInstaller{HostRoot: h.root, EnableInitdataAnnotation: true}
	if w := n.Weakenings(); len(w) != 1 || w[0] != "kata.enableInitdataAnnotation" {
		t.Fatalf("Weakenings() = %v", w)
	}
	if w := (&NodeInstaller{}).Weakenings(); len(w) != 0 {
		t.Fatalf("default installer reports weakenings %v", w)
	}
	ctx := context.Background()
	res, err := n.Install(ctx)
	if err != nil || len(res.Configs) != 1 || !res.Configs[0].InitdataAnnotation {
		t.Fatalf("Install = %+v, %v", res.Configs, err)
	}
	var c struct {
		Hypervisor map[string]struct {
			EnableAnnotations []string `toml:"enable_annotations"`
			Initrd            string   `toml:"initrd"`
		} `toml:"hypervisor"`
	}
	if err := toml.Unmarshal(h.read(t, h.cfg), &c); err != nil {
		t.Fatal(err)
	}
	q := c.Hypervisor["qemu"]
	want := []string{"enable_iommu", "virtio_fs_extra_args", "kernel_params", "cc_init_data"}
	if strings.Join(q.EnableAnnotations, ",") != strings.Join(want, ",") || !strings.Contains(q.Initrd, "authbridge-restrictive") {
		t.Errorf("enable_annotations = %v, initrd %q; want %v and the policy initrd", q.EnableAnnotations, q.Initrd, want)
	}
	// Idempotent.
	before := h.read(t, h.cfg)
	if _, err := n.Install(ctx); err != nil || !bytes.Equal(before, h.read(t, h.cfg)) {
		t.Fatalf("second Install changed the configuration (%v)", err)
	}
	if err := n.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if b := h.read(t, h.cfg); string(b) != qemuConfig {
		t.Errorf("configuration not restored byte-identical:\n%s", b)
	}
	// A section without enable_annotations gets the key, and loses it again.
	bare := strings.Replace(qemuConfig, `enable_annotations = ["enable_iommu", "virtio_fs_extra_args", "kernel_params"]`+"\n", "", 1)
	h.write(t, h.cfg, []byte(bare), 0o644)
	if _, err := n.Install(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(h.read(t, h.cfg)), `enable_annotations = ["cc_init_data"]`) {
		t.Errorf("no enable_annotations added:\n%s", h.read(t, h.cfg))
	}
	if err := n.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if b := h.read(t, h.cfg); string(b) != bare {
		t.Errorf("configuration not restored byte-identical:\n%s", b)
	}
}
