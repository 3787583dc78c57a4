package install

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
	"github.com/kagenti/authbridge-node/pkg/pluginconf"
)

// InstallBinary copies src into binDir/name atomically (temp file in binDir,
// fsync, chmod 0755, rename) so the runtime never executes a half-written
// plugin. It skips the copy when the installed file already has the same
// SHA-256 and mode 0755, and reports whether it wrote.
func InstallBinary(src, binDir, name string) (changed bool, err error) {
	if name == "" || name != filepath.Base(name) {
		return false, fmt.Errorf("binary name %q: want a plain file name such as %q", name, pluginconf.PluginType)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return false, fmt.Errorf("read plugin binary: %w", err)
	}
	if len(data) == 0 {
		return false, fmt.Errorf("plugin binary %s is empty", src)
	}
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return false, fmt.Errorf("create CNI bin dir: %w", err)
	}
	dst := filepath.Join(binDir, name)
	if same, err := sameContent(dst, data); err != nil {
		return false, err
	} else if same {
		return false, nil
	}
	if err := atomicfile.Write(dst, data, 0o755); err != nil {
		return false, fmt.Errorf("install plugin binary: %w", err)
	}
	return true, nil
}

// sameContent reports whether path is a regular 0755 file whose SHA-256
// equals that of data.
func sameContent(path string, data []byte) (bool, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read installed plugin binary: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("stat installed plugin binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o755 || fi.Size() != int64(len(data)) {
		return false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false, fmt.Errorf("hash installed plugin binary: %w", err)
	}
	want := sha256.Sum256(data)
	return bytes.Equal(h.Sum(nil), want[:]), nil
}

// RemoveBinary deletes binDir/name; a missing file is not an error. Call it
// only after RemoveEntry (see Uninstall).
func RemoveBinary(binDir, name string) error {
	if name == "" || name != filepath.Base(name) {
		return fmt.Errorf("binary name %q: want a plain file name such as %q", name, pluginconf.PluginType)
	}
	if err := atomicfile.Remove(filepath.Join(binDir, name)); err != nil {
		return fmt.Errorf("remove plugin binary: %w", err)
	}
	return nil
}
