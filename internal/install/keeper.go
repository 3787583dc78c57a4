package install

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Defaults of the Keeper.
const (
	DefaultDebounce = 5 * time.Millisecond
	DefaultResync   = 30 * time.Second
)

// Keeper keeps our entry in the primary network's conflist: it watches the
// conf dir (the directory, so atomic renames, new files and in-place
// rewrites are all seen) and re-runs InstallEntry shortly after any change
// to a config file, plus a periodic resync in case an event is missed.
// Re-running is cheap and idempotent: when our entry is already there
// nothing is written, so the keeper's own writes do not loop.
type Keeper struct {
	Options Options
	// Debounce is the quiet time after the last event before the keeper
	// looks (lets a primary CNI finish a multi-write rewrite); default
	// DefaultDebounce.
	Debounce time.Duration
	// Resync is the safety-net period; default DefaultResync.
	Resync time.Duration
	// OnReinsert is called (on the keeper's goroutine; keep it fast) each
	// time the keeper had to write our entry again after its first
	// successful install: the primary CNI dropped it, or a new lexically
	// first config appeared. The agent counts these in
	// authbridge_conflist_reinsertions_total.
	OnReinsert func(file string)
	// OnInstalled, if set, is called once after the first successful
	// install (readiness).
	OnInstalled func(Result)

	// newWatcher makes the conf dir watcher; nil means fsnotify's. Tests
	// set it to fail the way inotify does at its per-user limits, which a
	// test cannot reach without taking them from the whole machine.
	newWatcher func() (*fsnotify.Watcher, error)
}

// Run installs the entry, then keeps it until ctx is done (it then returns
// nil). Errors of single attempts (no config yet, a file that does not
// parse, a half-written file) are logged and retried on the next event or
// resync. A conf dir that cannot be watched (inotify's per-user limits are
// shared by every container of the node, and of every kind node on one
// host) does not stop it either: it installs at once, logs a WARN and
// checks every resync period, trying the watch again each time. Stop Run
// (cancel ctx and wait for it to return) before calling Uninstall, or it
// would put the entry back.
func (k *Keeper) Run(ctx context.Context) error {
	if _, err := k.Options.entry(); err != nil {
		return err
	}
	w, err := k.watch()
	if err != nil {
		k.Options.logger().Warn("cannot watch the CNI conf dir; checking it every resync period until the watch works (a primary CNI's rewrite is then seen within that period, not within milliseconds)",
			"dir", k.Options.ConfDir, "resync", k.resync().String(), "err", err)
	}
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	var installed bool
	k.ensure(&installed, "start")
	return k.loop(ctx, &w, &installed)
}

func (k *Keeper) resync() time.Duration {
	if k.Resync <= 0 {
		return DefaultResync
	}
	return k.Resync
}

// watch creates the conf dir if needed and watches it (the directory, so
// renames and new files are seen too).
func (k *Keeper) watch() (*fsnotify.Watcher, error) {
	dir := k.Options.ConfDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create CNI conf dir: %w", err)
	}
	newWatcher := k.newWatcher
	if newWatcher == nil {
		newWatcher = fsnotify.NewWatcher
	}
	w, err := newWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch CNI conf dir: %w", err)
	}
	if err := w.Add(dir); err != nil {
		w.Close()
		return nil, fmt.Errorf("watch CNI conf dir %s: %w", dir, err)
	}
	return w, nil
}

// ensure runs InstallEntry once and reports the outcome: OnInstalled the
// first time it succeeds, OnReinsert each later time it had to write.
func (k *Keeper) ensure(installed *bool, why string) {
	o := k.Options
	res, err := InstallEntry(o)
	switch {
	case errors.Is(err, ErrNoPrimaryConfig):
		o.logger().Info("waiting for the primary CNI to write its config", "dir", o.ConfDir)
		return
	case err != nil:
		// A primary CNI rewriting in place may be caught half-way;
		// its next write is another event.
		o.logger().Warn("cannot insert authbridge-cni entry", "trigger", why, "err", err)
		return
	}
	if !*installed {
		*installed = true
		if k.OnInstalled != nil {
			k.OnInstalled(res)
		}
		return
	}
	if res.Changed {
		o.logger().Info("re-inserted authbridge-cni entry", "file", res.File, "trigger", why)
		if k.OnReinsert != nil {
			k.OnReinsert(res.File)
		}
	}
}

// loop re-runs ensure a debounce after the last relevant event, and every
// resync period (re-arming the watch in case the directory was replaced, or
// making it when *w is nil because it could not be made before).
func (k *Keeper) loop(ctx context.Context, wp **fsnotify.Watcher, installed *bool) error {
	debounce := k.Debounce
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	o := k.Options
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	ticker := time.NewTicker(k.resync())
	defer ticker.Stop()
	for {
		// Without a watcher both channels are nil: only the resync ticks.
		var events <-chan fsnotify.Event
		var watchErrs <-chan error
		w := *wp
		if w != nil {
			events, watchErrs = w.Events, w.Errors
		}
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-events:
			if !ok {
				return errors.New("conf dir watcher closed")
			}
			if k.relevant(ev) {
				timer.Reset(debounce)
			}
		case err, ok := <-watchErrs:
			if !ok {
				return errors.New("conf dir watcher closed")
			}
			// Overflow and the like: look now rather than wait for resync.
			o.logger().Warn("conf dir watch error", "err", err)
			timer.Reset(debounce)
		case <-timer.C:
			k.ensure(installed, "fsnotify")
		case <-ticker.C:
			switch {
			case w == nil:
				if nw, err := k.watch(); err != nil {
					o.logger().Debug("CNI conf dir still not watchable", "dir", o.ConfDir, "err", err)
				} else {
					*wp = nw
					o.logger().Info("watching the CNI conf dir again", "dir", o.ConfDir)
				}
			default:
				if err := w.Add(o.ConfDir); err != nil {
					o.logger().Warn("re-watch CNI conf dir", "dir", o.ConfDir, "err", err)
				}
			}
			k.ensure(installed, "resync")
		}
	}
}

// relevant: a change to a file a runtime could load (not our temp files,
// not ignored names, not a mere chmod).
func (k *Keeper) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Base(ev.Name)
	if slices.Contains(k.Options.IgnoreNames, name) {
		return false
	}
	return slices.Contains(ConfExtensions, filepath.Ext(name))
}
