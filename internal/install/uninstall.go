package install

import (
	"context"
	"fmt"

	"github.com/kagenti/authbridge-node/internal/atomicfile"
)

// Install copies the binary, then inserts the entry: in this order, so a
// runtime never sees an entry whose binary is missing.
func Install(ctx context.Context, o Options) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if _, err := InstallBinary(o.SourceBinary, o.BinDir, o.binaryName()); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	return InstallEntry(o)
}

// Uninstall removes our entry from the conf dir and only then the binary,
// so a node is never left with an entry whose binary is missing (every pod
// sandbox creation would fail). If removing the entry fails the binary is
// kept and the error returned. The plugin kubeconfig (KubeconfigPath) goes
// last. Uninstall is the real removal: whether to call it (a deleted
// DaemonSet, node-agent uninstall) is the caller's decision, never a
// plain agent restart.
func Uninstall(ctx context.Context, o Options) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if _, err := RemoveEntry(o); err != nil {
		return fmt.Errorf("remove conflist entry (plugin binary kept so the remaining entry still works): %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := RemoveBinary(o.BinDir, o.binaryName()); err != nil {
		return err
	}
	if o.KubeconfigPath != "" {
		if err := atomicfile.Remove(o.KubeconfigPath); err != nil {
			return fmt.Errorf("remove plugin kubeconfig: %w", err)
		}
	}
	return nil
}
