// Package await is `leader-elector await`: it blocks until the status file
// says this replica leads (or, with --follower, that it does not), so that a
// shell runs `leader-elector await --leader && exec myapp`. It watches the
// file's directory with fsnotify; it never polls.
package await

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fsnotify/fsnotify"
)

// Role is what the status file must say.
type Role int

const (
	// Leader: the file exists, as a regular, non-empty file. The sidecar
	// writes it by rename, so it never exists empty; an empty file or a
	// symbolic link in its place was put there by someone else.
	Leader Role = iota
	// Follower: nothing exists at the file's path.
	Follower
)

func (r Role) String() string {
	if r == Follower {
		return "follower"
	}
	return "leader"
}

// holds reports whether the file at path says r now.
func (r Role) holds(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return r == Follower, nil
	case err != nil:
		return false, fmt.Errorf("read status file %s: %w", path, err)
	case r == Leader:
		return fi.Mode().IsRegular() && fi.Size() > 0, nil
	default:
		return false, nil
	}
}

// Waiter is an established watch of one status file's directory.
type Waiter struct {
	path string
	dir  string
	w    *fsnotify.Watcher
}

// Watch starts watching the directory of the status file at path (from
// status.Resolve), so that no change made after it returns is missed.
func Watch(path string) (*Waiter, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch status file %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watch status directory %s: %w", dir, err)
	}
	return &Waiter{path: path, dir: dir, w: w}, nil
}

// Close stops the watch.
func (g *Waiter) Close() error { return g.w.Close() }

// Until blocks until the file says want, or ctx ends (then it returns
// context.Cause(ctx)). It looks at the file once first, the watch being
// established already, and again on every event about the file and on every
// watch error (an overflowed queue may have dropped the event that mattered).
// The directory is watched, not the file, because the sidecar replaces the
// file by rename and removes it on step-down.
func (g *Waiter) Until(ctx context.Context, want Role) error {
	for {
		ok, err := want.holds(g.path)
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if err := g.next(ctx); err != nil {
			return err
		}
	}
}

// next waits for the next event that may have changed the file.
func (g *Waiter) next(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case ev, ok := <-g.w.Events:
			if !ok {
				return errors.New("status file watch closed")
			}
			name := filepath.Clean(ev.Name)
			if name == g.dir && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				return fmt.Errorf("status directory %s was removed or moved: nothing will appear in it", g.dir)
			}
			if name == g.path {
				return nil
			}
		case err, ok := <-g.w.Errors:
			if !ok {
				return errors.New("status file watch closed")
			}
			if !errors.Is(err, fsnotify.ErrEventOverflow) {
				return fmt.Errorf("watch status directory %s: %w", g.dir, err)
			}
			return nil
		}
	}
}

// Wait blocks until the status file at path says want, or ctx ends.
func Wait(ctx context.Context, path string, want Role) error {
	g, err := Watch(path)
	if err != nil {
		return err
	}
	defer g.Close()
	return g.Until(ctx, want)
}
