package kata

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
)

// imageStampSuffix names the file beside a generated image that records
// what it was made from (original size and mtime, policy SHA-256), so the
// two-minute re-check does not rehash a 256 MiB image.
const imageStampSuffix = ".source"

// imageChange is installImage's outcome for one hypervisor section.
type imageChange struct{ ConfigResult }

// installImage handles a [hypervisor.<name>] section that boots a disk
// image (Go runtime): measured images are refused, guests without the
// policy feature reported unenforced, others get a copy of the image with
// the policy written into its ext4 root file system, and content is
// returned with the image line pointing at the copy. The original image is
// never written.
func (n *NodeInstaller) installImage(cfg string, a guestAsset, content []byte) (imageChange, []byte, error) {
	cr := ConfigResult{Config: cfg, Hypervisor: a.Hypervisor}
	orig, ours := originalOf(a.Image)
	if !ours {
		orig = a.Image
	}
	refuse := func(status, reason string) (imageChange, []byte, error) {
		cr.Status, cr.Reason = status, fmt.Sprintf("[hypervisor.%s] boots image %s: %s", a.Hypervisor, orig, reason)
		n.log().Warn("kata policy not installed for image-based guest", "config", cfg, "hypervisor", a.Hypervisor, "image", orig, "status", status, "reason", reason)
		return imageChange{cr}, content, nil
	}
	if a.measured() {
		return refuse(StatusMeasuredImage, measuredImageReason)
	}
	real, err := n.resolve(orig)
	if err != nil {
		return refuse(StatusImageGuest, fmt.Sprintf("cannot read the image (%v); %s", err, imageGuestFix))
	}
	d, err := openDiskImage(n.onHost(real))
	if err != nil {
		return refuse(StatusImageGuest, fmt.Sprintf("%v; %s", err, imageGuestFix))
	}
	if d.partitions > 1 {
		return refuse(StatusMeasuredImage, fmt.Sprintf("it has %d partitions (osbuilder puts the dm-verity hash tree in partition 2): %s", d.partitions, measuredImageReason))
	}
	enforced, err := d.hasPolicyTree()
	if err != nil {
		return refuse(StatusUnenforced, fmt.Sprintf("%v; treated as unenforced", err))
	}
	if !enforced {
		return refuse(StatusUnenforced, unenforcedReason)
	}

	cr.OriginalImage = orig
	cr.Image = generatedInitrd(orig)
	cr.Backup = cfg + BackupSuffix
	if !ours {
		if content, err = setAsset(content, a.Hypervisor, "image", a.Image, cr.Image); err != nil {
			return imageChange{}, nil, err
		}
	}
	changed, err := n.writeImage(real, cr.Image, n.policy())
	if err != nil {
		return imageChange{}, nil, fmt.Errorf("write policy into a copy of %s: %w", orig, err)
	}
	cr.Status = StatusUnchanged
	if changed || !ours {
		cr.Status = StatusInstalled
		n.log().Info("kata policy installed into a copy of the guest image", "config", cfg, "hypervisor", a.Hypervisor, "image", cr.Image, "original", orig)
	}
	return imageChange{cr}, content, nil
}

// imageStamp identifies the original image and the policy a generated
// image was made from.
func imageStamp(orig string, pol []byte) (string, error) {
	fi, err := os.Stat(orig)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(pol)
	return strconv.FormatInt(fi.Size(), 10) + " " + strconv.FormatInt(fi.ModTime().UnixNano(), 10) + " " + hex.EncodeToString(sum[:]) + "\n", nil
}

// writeImage makes dst a copy of the host image realOrig with pol at
// GuestPolicyPath unless the stamp says it already is. atomicfile builds
// the copy under a temporary name in the same directory; the policy is
// written into that temporary file (debugfs, by name) and checked (read
// back, e2fsck) before atomicfile fsyncs and renames it into place, so Kata
// never boots a half-written image.
func (n *NodeInstaller) writeImage(realOrig, dst string, pol []byte) (bool, error) {
	stamp, err := imageStamp(n.onHost(realOrig), pol)
	if err != nil {
		return false, err
	}
	if b, err := os.ReadFile(n.onHost(dst + imageStampSuffix)); err == nil && bytes.Equal(b, []byte(stamp)) {
		if _, err := os.Stat(n.onHost(dst)); err == nil {
			return false, nil
		}
	}
	src, err := os.Open(n.onHost(realOrig))
	if err != nil {
		return false, err
	}
	defer src.Close()
	err = atomicfile.WriteLike(n.onHost(dst), n.onHost(realOrig), func(w io.Writer) error {
		if _, err := io.Copy(w, src); err != nil {
			return err
		}
		f, ok := w.(interface{ Name() string })
		if !ok {
			return errors.New("the atomic writer did not hand a named file; cannot edit the image copy")
		}
		d, err := openDiskImage(f.Name())
		if err != nil {
			return err
		}
		return d.writePolicy(pol)
	})
	if err != nil {
		return false, err
	}
	if err := atomicfile.WriteLike(n.onHost(dst+imageStampSuffix), n.onHost(dst), bytesWriter([]byte(stamp))); err != nil {
		return false, err
	}
	return true, nil
}

// initrdUnenforced reports an initrd whose guest agent lacks the policy
// feature (no /etc/kata-opa in it).
func (n *NodeInstaller) initrdUnenforced(orig string) (bool, error) {
	real, err := n.resolve(orig)
	if err != nil {
		return false, nil // writeInitrd reports the missing initrd
	}
	has, err := initrdHasPolicyTree(n.onHost(real))
	if err != nil {
		return true, err
	}
	return !has, nil
}
