// Package status keeps the leader status file: a file that exists, holding the
// leader's identity and a newline, only while this replica leads. Writes are
// atomic, a stale file is removed at start, and while leading the file is
// restored if anything deletes or changes it.
package status

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"k8s.io/utils/clock"
)

// DefaultPath is where the original project writes the file.
const DefaultPath = "/tmp/leader_status"

// Off, as the configured path, turns the file off: Resolve returns "", and
// a File of "" writes, removes and checks nothing. The drop-in modes use it,
// since the electors they stand in for wrote no file.
const Off = "-"

// fileName is the file's name when the configured path is a directory.
const fileName = "leader_status"

// Resolve returns the absolute path of the status file. statusFile wins over
// statusDir (the original project's name for the same setting). When the path
// is an existing directory, as when an emptyDir is mounted right at
// /tmp/leader_status, the file is leader_status inside it.
//
// Resolve refuses a status file that is a symbolic link, with a *PathError.
// The file is replaced by rename and removed on step-down, which replaces or
// removes a link, never writes through it: the link's target would never show
// the leader. And a link put into a shared directory by another container
// could aim the sidecar's writes and removals elsewhere. Links earlier in the
// path, a linked directory among them, are followed as usual.
func Resolve(statusFile, statusDir string) (string, error) {
	p := statusFile
	if p == "" {
		p = statusDir
	}
	if p == "" {
		p = DefaultPath
	}
	if p == Off {
		return "", nil
	}
	if strings.IndexByte(p, 0) >= 0 {
		return "", &PathError{Path: p, Rule: "must not contain a NUL byte"}
	}
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", &PathError{Path: p, Rule: "cannot be made absolute: " + err.Error()}
	}
	p = abs
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		p = filepath.Join(p, fileName)
	}
	// Other errors than a link (a parent that is a file, say) are left to
	// the first write, which fails, so that the replica does not lead and
	// /readyz says why.
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		target, _ := os.Readlink(p)
		return "", &PathError{Path: p, Rule: fmt.Sprintf("must not be a symbolic link (it points to %q): "+
			"the file is replaced by rename, which would replace the link, not write through it; use the link's target", target)}
	}
	return p, nil
}

// PathError is a status file path that Resolve refuses, and the rule it
// breaks.
type PathError struct{ Path, Rule string }

func (e *PathError) Error() string { return fmt.Sprintf("status file %q %s", e.Path, e.Rule) }

// File is the status file at one path.
type File struct {
	path string
	log  *slog.Logger

	mu      sync.Mutex
	content []byte // what the file must hold; nil when it must not exist
}

// New returns the File at path, which should come from Resolve; "" is no
// file: every method does nothing and succeeds.
func New(path string, log *slog.Logger) *File {
	return &File{path: path, log: log.With("status_file", path)}
}

// Path is the file's absolute path.
func (f *File) Path() string { return f.path }

// RemoveStale removes a file left by an earlier run: the emptyDir outlives
// container restarts, and that file would claim a leadership we do not hold.
func (f *File) RemoveStale() error {
	if f.path == "" {
		return nil
	}
	err := os.Remove(f.path)
	switch {
	case err == nil:
		f.log.Warn("removed a stale status file left by an earlier run")
		return nil
	case errors.Is(err, os.ErrNotExist):
		return nil
	default:
		return fmt.Errorf("remove stale status file %s: %w", f.path, err)
	}
}

// Publish writes identity into the file, atomically, and keeps it there until
// Withdraw.
func (f *File) Publish(identity string) error {
	if f.path == "" {
		return nil
	}
	content := []byte(identity + "\n")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.content = content
	return f.write(content)
}

// Withdraw removes the file and stops restoring it. It fails only while
// the file is still there: a read-only filesystem refuses to remove a file
// that does not exist too, and that is no failure.
func (f *File) Withdraw() error {
	if f.path == "" {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.content = nil
	err := os.Remove(f.path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if _, serr := os.Lstat(f.path); errors.Is(serr, os.ErrNotExist) {
		return nil
	}
	return fmt.Errorf("remove status file %s: %w", f.path, err)
}

// Writable checks that the file could be written now, for readiness: it
// writes a byte to a probe file next to it, syncs and removes it. Creating an
// empty file is not enough: that succeeds on a full filesystem.
func (f *File) Writable() error {
	if f.path == "" {
		return nil
	}
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".probe-*")
	if err != nil {
		return fmt.Errorf("status directory %s is not writable: %w", dir, err)
	}
	name := tmp.Name()
	_, err = tmp.Write([]byte{'\n'})
	if err == nil {
		err = tmp.Sync()
	}
	err = errors.Join(err, tmp.Close())
	rmErr := os.Remove(name)
	if err != nil {
		return fmt.Errorf("status directory %s is not writable: %w", dir, err)
	}
	if rmErr != nil {
		return fmt.Errorf("status directory %s: %w", dir, rmErr)
	}
	return nil
}

// WritableEvery returns a check of Writable that runs it at most once per
// every on clk and answers with the last result in between, waiting for a
// check under way. Readiness asks it on every request to an unauthenticated
// port, and each check creates, writes, syncs and removes a file.
func (f *File) WritableEvery(clk clock.PassiveClock, every time.Duration) func() error {
	var mu sync.Mutex
	var at time.Time
	var last error
	return func() error {
		mu.Lock()
		defer mu.Unlock()
		if !at.IsZero() && clk.Since(at) < every {
			return last
		}
		last = f.Writable()
		at = clk.Now()
		return last
	}
}

// write replaces the file with content so that readers see the old file or
// the new one, never a partial one: temp file, rename. Neither is fsynced:
// the file means nothing after a crash of the node (a starting sidecar
// removes any it finds), and an fsync waits for the journal commit of
// whatever else the node's disk holds dirty, which took 150 ms on the
// leadership path under load here. A full filesystem fails the write
// itself, and the readiness check syncs its probe.
func (f *File) write(content []byte) error {
	dir := filepath.Dir(f.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(f.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write status file %s: %w", f.path, err)
	}
	name := tmp.Name()
	_, err = tmp.Write(content)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, f.path)
	}
	if err != nil {
		_ = os.Remove(name)
		return fmt.Errorf("write status file %s: %w", f.path, err)
	}
	return nil
}

// Watcher is a started watch of the status file's directory.
type Watcher struct {
	f *File
	w *fsnotify.Watcher
}

// Watch starts watching the directory now, so that nothing done after it
// returns is missed; Run handles the events.
func (f *File) Watch() (*Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch status file %s: %w", f.path, err)
	}
	dir := filepath.Dir(f.path)
	if err := w.Add(dir); err != nil {
		_ = w.Close()
		return nil, fmt.Errorf("watch status directory %s: %w", dir, err)
	}
	return &Watcher{f: f, w: w}, nil
}

// Run watches until ctx ends, then stops the watch. While the file is
// published, a deleted or changed file is restored with a warning; when it
// cannot be restored, onLost is called with the error, so that the caller can
// give up leadership it can no longer announce. The directory is watched, not
// the file, because atomic writers (ours included) replace files by rename.
func (g *Watcher) Run(ctx context.Context, onLost func(error)) error {
	defer g.w.Close()
	f := g.f
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-g.w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) != f.path {
				continue
			}
			if err := f.restore(); err != nil {
				onLost(err)
			}
		case err, ok := <-g.w.Errors:
			if !ok {
				return nil
			}
			f.log.Warn("status file watch error", "err", err)
			if err := f.restore(); err != nil {
				onLost(err)
			}
		}
	}
}

// restore rewrites the file if it is published and not as it must be.
func (f *File) restore() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.content == nil {
		return nil
	}
	// A link put in the file's place is replaced too, even one to a file
	// with the right content.
	if fi, err := os.Lstat(f.path); err == nil && fi.Mode().IsRegular() {
		if got, err := os.ReadFile(f.path); err == nil && string(got) == string(f.content) {
			return nil
		}
	}
	f.log.Warn("status file was deleted or changed while leading; restoring it")
	return f.write(f.content)
}
