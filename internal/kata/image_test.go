package kata

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/kagenti/authbridge-node/internal/testing/testenv"
	"github.com/kagenti/authbridge-node/policy"
)

const (
	imagePath   = "/opt/kata/share/kata-containers/kata-containers.img"
	imageConfig = `[hypervisor.qemu]
path = "/opt/kata/bin/qemu-system-x86_64"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
image = "/opt/kata/share/kata-containers/kata-containers.img"   # kata-deploy default
machine_type = "q35"
kernel_params = "agent.log=debug"

[runtime]
internetworking_model="tcfilter"
`
	partStart = 2048 // sectors: where osbuilder's parted puts partition 1 (1 MiB)
)

// guestImage builds a Kata guest disk image the way osbuilder's
// image_builder.sh lays it out (an msdos partition table, the ext4 root file
// system in partition 1, a dm-verity hash partition 2 when measured) with
// Debian's mkfs.ext4 -d from a root tree; withOPA adds osbuilder's
// AGENT_POLICY=yes files (/etc/kata-opa/allow-all.rego and the
// default-policy.rego link). The kata-agent is a stand-in file: no real
// guest can be built here.
func guestImage(t *testing.T, withOPA, verityPartition bool) []byte {
	t.Helper()
	for _, tool := range []string{"mkfs.ext4", "debugfs", "e2fsck"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (hack/install-deps.sh installs e2fsprogs): %v", tool, err)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	files := map[string]string{
		"usr/bin/kata-agent": "\x7fELF stand-in agent",
		"sbin/init":          "#!/bin/sh\nexec /usr/bin/kata-agent\n",
	}
	if withOPA {
		files["etc/kata-opa/allow-all.rego"] = "package agent_policy\n\ndefault ExecProcessRequest := true\n"
	}
	for p, c := range files {
		os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755)
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if withOPA {
		if err := os.Symlink("allow-all.rego", filepath.Join(root, "etc/kata-opa/default-policy.rego")); err != nil {
			t.Fatal(err)
		}
	}
	fsImg := filepath.Join(dir, "rootfs.ext4")
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", root, "-E", "root_owner=0:0", fsImg, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v: %s", err, out)
	}
	fs, err := os.ReadFile(fsImg)
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, partStart*512, partStart*512+len(fs)+1<<20)
	entry := func(i int, start, sectors uint32) {
		e := disk[446+16*i:]
		e[4] = 0x83 // Linux
		binary.LittleEndian.PutUint32(e[8:], start)
		binary.LittleEndian.PutUint32(e[12:], sectors)
	}
	entry(0, partStart, uint32(len(fs)/512))
	if verityPartition {
		entry(1, partStart+uint32(len(fs)/512), 2048)
	}
	disk[510], disk[511] = 0x55, 0xaa
	disk = append(disk, fs...)
	if verityPartition {
		disk = append(disk, make([]byte, 1<<20)...)
	}
	return disk
}

func imageHost(t *testing.T, img []byte, config string) *host {
	t.Helper()
	h := &host{root: t.TempDir(), cfg: "/opt/kata/share/defaults/kata-containers/configuration-qemu.toml"}
	h.write(t, h.cfg, []byte(config), 0o644)
	h.write(t, imagePath, img, 0o644)
	return h
}

// readBackMounted loop-mounts the root file system of a generated image
// read-only (the kernel's ext4, not debugfs) and returns the policy file,
// its mode and owner.
func readBackMounted(t *testing.T, img string) ([]byte, os.FileInfo) {
	t.Helper()
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop,ro,offset=1048576", img, mnt).CombinedOutput(); err != nil {
		t.Fatalf("loop-mount %s (the test runs as root, like the node agent): %v: %s", img, err, out)
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", mnt, err, out)
		}
	}()
	p := filepath.Join(mnt, GuestPolicyPath)
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if a, err := os.ReadFile(filepath.Join(mnt, "etc/kata-opa/allow-all.rego")); err != nil || !strings.Contains(string(a), "ExecProcessRequest := true") {
		t.Errorf("allow-all.rego not kept in the copy: %q, %v", a, err)
	}
	return b, fi
}

func TestInstallIntoImageGuest(t *testing.T) {
	testenv.Root(t, "loop-mounting the guest image to read it back")
	img := guestImage(t, true, false)
	origSum := sha256.Sum256(img)
	h := imageHost(t, img, imageConfig)
	n := &NodeInstaller{HostRoot: h.root}
	ctx := context.Background()

	res, err := n.Install(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Configs) != 1 || res.Configs[0].Status != StatusInstalled || res.Label() != LabelValueRestrictive {
		t.Fatalf("Install = %+v, label %q", res.Configs, res.Label())
	}
	c := res.Configs[0]
	want := "/opt/kata/share/kata-containers/kata-containers.authbridge-restrictive.img"
	if c.Image != want || c.OriginalImage != imagePath {
		t.Fatalf("image %q (from %q), want %q", c.Image, c.OriginalImage, want)
	}
	// The configuration changed only in the image value.
	wantCfg := strings.Replace(imageConfig, imagePath+`"`, want+`"`, 1)
	if b := h.read(t, h.cfg); string(b) != wantCfg {
		t.Errorf("configuration:\n%s\nwant:\n%s", b, wantCfg)
	}
	// The original is untouched, the copy carries the policy as a regular
	// root-owned 0644 file where osbuilder had the allow-all link.
	if sha256.Sum256(h.read(t, imagePath)) != origSum {
		t.Error("original image modified")
	}
	got, fi := readBackMounted(t, h.on(want))
	if !bytes.Equal(got, policy.Restrictive()) {
		t.Errorf("policy in the mounted copy: %d bytes, want the restrictive policy's %d", len(got), len(policy.Restrictive()))
	}
	st := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 || st.Uid != 0 || st.Gid != 0 {
		t.Errorf("policy file mode %v owner %d:%d, want regular 0644 root:root", fi.Mode(), st.Uid, st.Gid)
	}
	if out, err := exec.Command("e2fsck", "-fn", h.on(want)+"?offset=1048576").CombinedOutput(); err != nil {
		t.Errorf("e2fsck of the copy: %v: %s", err, out)
	}

	// Again: nothing rewritten.
	st1, _ := os.Stat(h.on(want))
	res2, err := n.Install(ctx)
	if err != nil || res2.Configs[0].Status != StatusUnchanged {
		t.Fatalf("second Install = %+v, %v", res2.Configs, err)
	}
	if st2, _ := os.Stat(h.on(want)); !os.SameFile(st1, st2) {
		t.Error("second Install rewrote the image")
	}

	// Rollback: configuration and original byte for byte, copy gone.
	if err := n.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if b := h.read(t, h.cfg); string(b) != imageConfig {
		t.Errorf("configuration not restored byte-identical:\n%s", b)
	}
	if sha256.Sum256(h.read(t, imagePath)) != origSum {
		t.Error("original image changed by the rollback")
	}
	for _, p := range []string{want, want + imageStampSuffix, h.cfg + BackupSuffix} {
		if _, err := os.Stat(h.on(p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after uninstall", p)
		}
	}
}

// Guests the installer must not change or must not claim.
func TestImageGuestsRefused(t *testing.T) {
	cases := []struct {
		name   string
		img    []byte
		config string
		status string
		reason string
		label  string
	}{
		{"dm-verity partition", guestImage(t, true, true), imageConfig, StatusMeasuredImage, "partition 2", ""},
		{"kernel_verity_params", guestImage(t, true, false), strings.Replace(imageConfig, `machine_type = "q35"`, `machine_type = "q35"`+"\nkernel_verity_params = \"root_hash=ab12,salt=cd34,data_blocks=2048,data_block_size=4096,hash_block_size=4096\"", 1), StatusMeasuredImage, "dm-verity", ""},
		{"agent without the policy feature", guestImage(t, false, false), imageConfig, StatusUnenforced, "AGENT_POLICY=yes", LabelValueUnenforced},
		{"not ext4", bytes.Repeat([]byte{0x5a}, 4<<20), imageConfig, StatusImageGuest, "not ext4", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := imageHost(t, c.img, c.config)
			res, err := (&NodeInstaller{HostRoot: h.root}).Install(context.Background())
			if len(res.Configs) != 1 || res.Configs[0].Status != c.status || !strings.Contains(res.Configs[0].Reason, c.reason) {
				t.Fatalf("Install = %+v, %v; want status %s with %q", res.Configs, err, c.status, c.reason)
			}
			if res.Label() != c.label {
				t.Errorf("label %q, want %q", res.Label(), c.label)
			}
			if res.PublishedSHA256() != "" {
				t.Errorf("policy SHA-256 published for a node whose guest carries no enforced policy")
			}
			if c.label == "" && !errors.Is(err, ErrNoGuestChanged) {
				t.Errorf("err = %v, want ErrNoGuestChanged", err)
			}
			if b := h.read(t, h.cfg); string(b) != c.config {
				t.Error("configuration modified")
			}
			if !bytes.Equal(h.read(t, imagePath), c.img) {
				t.Error("image modified")
			}
			matches, _ := filepath.Glob(h.on("/opt/kata/share/kata-containers/*authbridge*"))
			if len(matches) != 0 {
				t.Errorf("files written: %v", matches)
			}
		})
	}
}

// An initrd without /etc/kata-opa comes from an agent built without the
// policy feature: nothing is appended and the node is not labelled
// restrictive.
func TestInitrdWithoutPolicyFeature(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755)
	os.WriteFile(filepath.Join(root, "usr/bin/kata-agent"), []byte("\x7fELF"), 0o755)
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -H newc -o | gzip -9")
	cmd.Dir = root
	initrd, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t, false)
	h.write(t, h.realPath, initrd, 0o644)
	res, err := (&NodeInstaller{HostRoot: h.root}).Install(context.Background())
	if len(res.Configs) != 1 || res.Configs[0].Status != StatusUnenforced || res.Label() != LabelValueUnenforced || res.PublishedSHA256() != "" {
		t.Fatalf("Install = %+v, %v, label %q", res.Configs, err, res.Label())
	}
	if b := h.read(t, h.cfg); string(b) != qemuConfig {
		t.Error("configuration modified")
	}
	has, err := initrdHasPolicyTree(h.on(h.realPath))
	if err != nil || has {
		t.Errorf("initrdHasPolicyTree = %v, %v", has, err)
	}
	// The fake osbuilder initrd (AGENT_POLICY=yes) has it.
	withOPA, _ := fakeInitrd(t)
	p := filepath.Join(t.TempDir(), "initrd")
	os.WriteFile(p, withOPA, 0o644)
	if has, err := initrdHasPolicyTree(p); err != nil || !has {
		t.Errorf("initrdHasPolicyTree(osbuilder AGENT_POLICY=yes) = %v, %v", has, err)
	}
}

// dragonballConfig is shaped like runtime-rs' configuration-dragonball.toml
// as kata-deploy ships it: an image guest, passfd I/O on.
const dragonballConfig = `[hypervisor.dragonball]
path = "/opt/kata/bin/dragonball"
kernel = "/opt/kata/share/kata-containers/vmlinux.container"
image = "/opt/kata/share/kata-containers/kata-containers.img"
# initdata = ""
enable_annotations = ["default_vcpus", "cc_init_data"]
shared_fs = "inline-virtio-fs"

[agent.kata]
dial_timeout_ms = 10

[runtime]
use_passfd_io = true   # default on Dragonball
passfd_listener_port = 1027
name = "virt_container"
hypervisor_name = "dragonball"
agent_name = "kata"
`

func TestRuntimeRSImageGuestGetsInitdata(t *testing.T) {
	img := guestImage(t, true, false)
	h := imageHost(t, img, dragonballConfig)
	n := &NodeInstaller{HostRoot: h.root}
	ctx := context.Background()
	res, err := n.Install(ctx)
	if err != nil || len(res.Configs) != 1 || res.Configs[0].Status != StatusInstalled || res.Label() != LabelValueRestrictive {
		t.Fatalf("Install = %+v, %v, label %q", res.Configs, err, res.Label())
	}
	// Read back with the TOML parser the package uses (go-toml v2).
	var got struct {
		Hypervisor map[string]struct {
			Image    string `toml:"image"`
			Initdata string `toml:"initdata"`
		} `toml:"hypervisor"`
		Runtime struct {
			UsePassfdIO        bool `toml:"use_passfd_io"`
			PassfdListenerPort int  `toml:"passfd_listener_port"`
		} `toml:"runtime"`
	}
	if err := toml.Unmarshal(h.read(t, h.cfg), &got); err != nil {
		t.Fatal(err)
	}
	db := got.Hypervisor["dragonball"]
	if db.Image != imagePath {
		t.Errorf("image changed to %q", db.Image)
	}
	doc, err := ParseInitdata([]byte(db.Initdata))
	if err != nil {
		t.Fatalf("initdata in the configuration does not parse: %v", err)
	}
	if doc.Data[InitdataKeyPolicy] != string(policy.Restrictive()) {
		t.Error("initdata policy is not the restrictive policy")
	}
	want, _ := BuildInitdata(InitdataOptions{Policy: policy.Restrictive()})
	if db.Initdata != string(want.TOML) || res.Configs[0].Initdata != want.DigestHex() {
		t.Error("initdata is not the document node-agent kata initdata builds (its digest is what attestation would bind)")
	}
	if got.Runtime.UsePassfdIO || got.Runtime.PassfdListenerPort != 1027 {
		t.Errorf("use_passfd_io = %v (port %d), want false: with passfd every CreateContainerRequest is refused", got.Runtime.UsePassfdIO, got.Runtime.PassfdListenerPort)
	}
	if !bytes.Equal(h.read(t, imagePath), img) {
		t.Error("image modified: runtime-rs guests get the policy through initdata")
	}
	if m, _ := filepath.Glob(h.on("/opt/kata/share/kata-containers/*authbridge*")); len(m) != 0 {
		t.Errorf("files written beside the image: %v", m)
	}
	// Idempotent, then rolled back byte for byte.
	if res, err := n.Install(ctx); err != nil || res.Configs[0].Status != StatusUnchanged {
		t.Fatalf("second Install = %+v, %v", res.Configs, err)
	}
	if err := n.Uninstall(ctx); err != nil {
		t.Fatal(err)
	}
	if b := h.read(t, h.cfg); string(b) != dragonballConfig {
		t.Errorf("configuration not restored byte-identical:\n%s", b)
	}

	// An administrator's own initdata is left alone (and not claimed).
	own := strings.Replace(dragonballConfig, `# initdata = ""`, `initdata = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n"`, 1)
	h2 := imageHost(t, img, own)
	res, err = (&NodeInstaller{HostRoot: h2.root}).Install(ctx)
	if len(res.Configs) != 1 || res.Configs[0].Status != StatusImageGuest || !strings.Contains(res.Configs[0].Reason, "already sets initdata") || res.Label() != "" {
		t.Fatalf("Install(admin initdata) = %+v, %v", res.Configs, err)
	}
	if b := h2.read(t, h2.cfg); string(b) != own {
		t.Error("configuration with the administrator's initdata modified")
	}
}
