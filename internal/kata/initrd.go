package kata

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// policyMTime is the fixed mtime of the appended entries, so the same policy
// always yields the same bytes (idempotent installs, stable hashes).
var policyMTime = time.Unix(0, 0).UTC()

// PolicyCPIO returns a gzip'd newc cpio archive carrying policy at
// GuestPolicyPath, with its parent directories (root:root 0755, the modes
// osbuilder gives them: the kernel applies a directory entry's mode to an
// existing directory).
func PolicyCPIO(policy []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	cw := cpio.NewWriter(zw)
	rel := strings.TrimPrefix(GuestPolicyPath, "/")
	var dirs []string
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		dirs = append([]string{d}, dirs...)
	}
	for _, d := range dirs {
		if err := cw.WriteHeader(&cpio.Header{Name: d, Mode: cpio.TypeDir | 0o755, Links: 2, ModTime: policyMTime}); err != nil {
			return nil, fmt.Errorf("cpio directory %s: %w", d, err)
		}
	}
	// A regular file replaces osbuilder's default-policy.rego symlink: the
	// kernel unlinks an existing entry of another type before creating it.
	if err := cw.WriteHeader(&cpio.Header{Name: rel, Mode: cpio.TypeReg | 0o644, Links: 1, Size: int64(len(policy)), ModTime: policyMTime}); err != nil {
		return nil, fmt.Errorf("cpio %s: %w", rel, err)
	}
	if _, err := cw.Write(policy); err != nil {
		return nil, fmt.Errorf("cpio %s: %w", rel, err)
	}
	if err := cw.Close(); err != nil {
		return nil, fmt.Errorf("cpio trailer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip cpio: %w", err)
	}
	return buf.Bytes(), nil
}

// AppendPolicy writes original followed by PolicyCPIO(policy). The kernel
// unpacks concatenated (compressed) cpio archives in order, so the policy
// overrides whatever the original initrd had at GuestPolicyPath; the
// original bytes are copied unchanged.
func AppendPolicy(w io.Writer, original io.Reader, policy []byte) error {
	member, err := PolicyCPIO(policy)
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, original); err != nil {
		return fmt.Errorf("copy original initrd: %w", err)
	}
	if _, err := w.Write(member); err != nil {
		return fmt.Errorf("append policy archive: %w", err)
	}
	return nil
}
