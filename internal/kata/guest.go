package kata

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// The agent enforces a policy only when it is built with AGENT_POLICY=yes
// (cargo feature agent-policy); without it every request is allowed and the
// policy file is never read. osbuilder (tools/osbuilder/rootfs-builder/
// rootfs.sh, kata 4.1.0) creates /etc/kata-opa, with allow-all.rego and the
// default-policy.rego link, exactly when AGENT_POLICY=yes, so the tree's
// presence in the guest's root filesystem is the sign that its agent was
// built with the feature. This is read from the guest asset itself (the
// initrd's cpio entries, the image's ext4 directory), never assumed.
const guestPolicyDir = "etc/kata-opa"

// ErrPolicyFeatureUnknown means the guest asset could not be read well enough
// to tell whether its agent enforces policies.
var ErrPolicyFeatureUnknown = errors.New("cannot tell whether the guest's agent enforces policies")

// initrdHasPolicyTree reports whether the (gzip'd or plain) newc initrd at
// path carries /etc/kata-opa in its first archive, which is what osbuilder
// writes.
func initrdHasPolicyTree(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if magic, _ := br.Peek(2); bytes.Equal(magic, []byte{0x1f, 0x8b}) {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return false, fmt.Errorf("%w: %s: %v", ErrPolicyFeatureUnknown, path, err)
		}
		gz.Multistream(false)
		r = gz
	}
	hdr := make([]byte, 110)
	for {
		if _, err := io.ReadFull(r, hdr); err != nil {
			return false, fmt.Errorf("%w: %s is not a gzip'd newc cpio initrd (%v)", ErrPolicyFeatureUnknown, path, err)
		}
		if string(hdr[:6]) != "070701" && string(hdr[:6]) != "070702" {
			return false, fmt.Errorf("%w: %s is not a newc cpio initrd (magic %q; zstd/xz initrds are not read)", ErrPolicyFeatureUnknown, path, hdr[:6])
		}
		field := func(i int) int64 {
			v, _ := strconv.ParseInt(string(hdr[6+8*i:14+8*i]), 16, 64)
			return v
		}
		size, nameSize := field(6), field(11)
		name := make([]byte, pad4(110+nameSize)-110)
		if _, err := io.ReadFull(r, name); err != nil {
			return false, fmt.Errorf("%w: %s: truncated cpio entry", ErrPolicyFeatureUnknown, path)
		}
		n := strings.TrimPrefix(strings.TrimRight(string(name[:max(nameSize-1, 0)]), "\x00"), "./")
		if n == "TRAILER!!!" {
			return false, nil
		}
		if n == guestPolicyDir || strings.HasPrefix(n, guestPolicyDir+"/") {
			return true, nil
		}
		if _, err := io.CopyN(io.Discard, r, pad4(size)); err != nil {
			return false, fmt.Errorf("%w: %s: truncated cpio entry %s", ErrPolicyFeatureUnknown, path, n)
		}
	}
}

func pad4(n int64) int64 { return (n + 3) &^ 3 }

// diskImage is a Kata guest disk image as osbuilder's image_builder.sh
// makes it: an msdos partition table with the root filesystem in partition
// 1 and, for measured root filesystems (MEASURED_ROOTFS=yes), the dm-verity
// hash tree in partition 2. A bare file system (no table) is read at 0.
type diskImage struct {
	path       string
	offset     int64 // byte offset of the root file system
	partitions int   // used msdos partition entries (0: no table)
}

func openDiskImage(path string) (diskImage, error) {
	f, err := os.Open(path)
	if err != nil {
		return diskImage{}, err
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := io.ReadFull(f, mbr); err != nil {
		return diskImage{}, fmt.Errorf("read %s: %w", path, err)
	}
	d := diskImage{path: path}
	if mbr[510] == 0x55 && mbr[511] == 0xaa {
		for i := 0; i < 4; i++ {
			e := mbr[446+16*i:]
			if e[4] == 0 { // partition type 0: unused entry
				continue
			}
			d.partitions++
			if i == 0 {
				d.offset = int64(binary.LittleEndian.Uint32(e[8:12])) * 512
			}
		}
	}
	magic := make([]byte, 2)
	if _, err := f.ReadAt(magic, d.offset+1024+56); err != nil || binary.LittleEndian.Uint16(magic) != 0xef53 {
		return d, fmt.Errorf("%s: the root file system (at byte %d) is not ext4; only ext4 guest images can carry the policy (erofs/xfs images: use initdata or rebuild the image)", path, d.offset)
	}
	return d, nil
}

// device is the image as e2fsprogs opens it (io option offset=).
func (d diskImage) device() string {
	return d.path + "?offset=" + strconv.FormatInt(d.offset, 10)
}

// debugfs runs e2fsprogs' debugfs on the image with the request lines.
func (d diskImage) debugfs(write bool, requests ...string) (string, error) {
	// One request goes as -R, whose stdout is the request's output alone
	// (with -f, debugfs echoes each request line before its output).
	args := []string{"-R", strings.Join(requests, "")}
	if len(requests) != 1 {
		args = []string{"-f", "-"}
	}
	if write {
		args = append([]string{"-w"}, args...)
	}
	cmd := exec.Command("debugfs", append(args, d.device())...)
	cmd.Stdin = strings.NewReader(strings.Join(requests, "\n") + "\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("debugfs %s: %w: %s", d.device(), err, strings.TrimSpace(stderr.String()))
	}
	// debugfs reports a failed request on stderr and still exits 0.
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "debugfs ") {
			return string(out), fmt.Errorf("debugfs %s: %s", d.device(), l)
		}
	}
	return string(out), nil
}

// hasPolicyTree reports whether /etc/kata-opa exists in the image.
func (d diskImage) hasPolicyTree() (bool, error) {
	out, err := d.debugfs(false, "stat /"+guestPolicyDir)
	if err != nil {
		if strings.Contains(err.Error(), "File not found") {
			return false, nil
		}
		return false, fmt.Errorf("%w: %v", ErrPolicyFeatureUnknown, err)
	}
	return strings.Contains(out, "Type: directory"), nil
}

// readFile returns the content of guest path p (following no links).
func (d diskImage) readFile(p string) ([]byte, error) {
	out, err := d.debugfs(false, "cat "+p)
	return []byte(out), err
}

// writePolicy replaces /etc/kata-opa/default-policy.rego (osbuilder's
// symlink to allow-all.rego) by a root-owned 0644 file with pol, then reads
// it back and checks the file system with e2fsck.
func (d diskImage) writePolicy(pol []byte) error {
	tmp, err := os.CreateTemp("", "authbridge-kata-policy-*.rego")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(pol); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	p := GuestPolicyPath
	if _, err := d.debugfs(false, "stat "+p); err == nil {
		if _, err := d.debugfs(true, "rm "+p); err != nil {
			return err
		}
	}
	if _, err := d.debugfs(true,
		"write "+tmp.Name()+" "+p,
		"set_inode_field "+p+" mode 0100644",
		"set_inode_field "+p+" uid 0",
		"set_inode_field "+p+" gid 0",
	); err != nil {
		return err
	}
	got, err := d.readFile(p)
	if err != nil {
		return err
	}
	if !bytes.Equal(got, pol) {
		return fmt.Errorf("%s in %s reads back %d bytes, want the %d of the policy", p, d.path, len(got), len(pol))
	}
	if out, err := exec.Command("e2fsck", "-fn", d.device()).CombinedOutput(); err != nil {
		return fmt.Errorf("e2fsck -fn %s after writing the policy: %w: %s", d.device(), err, out)
	}
	return nil
}
