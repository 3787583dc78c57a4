// Package atomicfile is the one way this project replaces a file on the
// host (CNI configs, the plugin binary and kubeconfig, Kata configs and
// initrds, the node state, the plugin's container records).
//
// The durability contract, the same for every caller: the new content goes
// to a temporary file in the target's directory (so the rename cannot cross
// a filesystem), the temporary file gets its permission bits (and the
// owner of the file it replaces, or of a reference file) explicitly, so the
// umask never decides them, it is fsynced, renamed over the target, and the
// directory is fsynced so the rename survives a crash. A reader sees the old
// or the new file, never part of one. On any error the temporary file is
// removed and the target is untouched. A symlink at the target is followed,
// so the link stays a link and its target is replaced.
package atomicfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// TempPattern names the temporary files: a leading dot and the ".tmp"
// extension, so no runtime takes one for a CNI config (.conf, .conflist,
// .json) and no reader of a state directory takes one for a record.
const TempPattern = ".authbridge-*.tmp"

// owner is a file's uid and gid; -1 leaves it to the writing process.
type owner struct{ uid, gid int }

// Write replaces path with data, with permission bits perm; an existing
// file's owner is kept.
func Write(path string, data []byte, perm fs.FileMode) error {
	return WriteFunc(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFunc is Write for content produced by write (streamed, e.g. a copy
// of a large file), under the same contract.
func WriteFunc(path string, perm fs.FileMode, write func(io.Writer) error) error {
	target, err := resolve(path)
	if err != nil {
		return err
	}
	o := owner{-1, -1}
	if fi, err := os.Stat(target); err == nil {
		o = ownerOf(fi)
	}
	return replace(path, target, perm, o, write)
}

// WriteLike is WriteFunc with the permission bits and owner of the file
// like (e.g. a derived file that must look like its original).
func WriteLike(path, like string, write func(io.Writer) error) error {
	fi, err := os.Stat(like)
	if err != nil {
		return fmt.Errorf("write %s: mode of %w", path, err)
	}
	target, err := resolve(path)
	if err != nil {
		return err
	}
	return replace(path, target, fi.Mode().Perm(), ownerOf(fi), write)
}

// Remove unlinks path (a missing file is not an error) and fsyncs its
// directory, so the removal survives a crash too.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir makes a rename or unlink in dir durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("open dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("fsync dir %s: %w", dir, err)
	}
	return nil
}

func resolve(path string) (string, error) {
	resolved, err := filepath.EvalSymlinks(path)
	switch {
	case err == nil:
		return resolved, nil
	case errors.Is(err, fs.ErrNotExist):
		return path, nil
	default:
		return "", fmt.Errorf("resolve %s: %w", path, err)
	}
}

func ownerOf(fi fs.FileInfo) owner {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return owner{int(st.Uid), int(st.Gid)}
	}
	return owner{-1, -1}
}

func replace(path, target string, perm fs.FileMode, o owner, write func(io.Writer) error) (err error) {
	dir := filepath.Dir(target)
	tmp, err := os.CreateTemp(dir, TempPattern)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := write(tmp); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm.Perm()); err != nil {
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if o.uid >= 0 && o.uid != os.Geteuid() || o.gid >= 0 && o.gid != os.Getegid() {
		if err := tmp.Chown(o.uid, o.gid); err != nil {
			return fmt.Errorf("chown %s: %w", path, err)
		}
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), target); err != nil {
		return fmt.Errorf("rename into %s: %w", path, err)
	}
	return SyncDir(dir)
}
