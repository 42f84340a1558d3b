package status

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/testutil"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// eventually polls cond every 10ms until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Millisecond, 5*time.Second, what, cond)
}

func TestResolve(t *testing.T) {
	tmp := t.TempDir()
	existingDir := filepath.Join(tmp, "mounted")
	if err := os.Mkdir(existingDir, 0o755); err != nil {
		t.Fatal(err)
	}
	existingFile := filepath.Join(tmp, "file")
	if err := os.WriteFile(existingFile, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	// DefaultPath lies outside the test's control: expect whatever it
	// resolves to on this machine, without creating anything there.
	wantDefault := DefaultPath
	if fi, err := os.Stat(DefaultPath); err == nil && fi.IsDir() {
		wantDefault = filepath.Join(DefaultPath, "leader_status")
	}

	tests := []struct {
		name                  string
		statusFile, statusDir string
		want                  string
	}{
		{name: "STATUS_FILE wins over STATUS_DIR", statusFile: filepath.Join(tmp, "a"), statusDir: filepath.Join(tmp, "b"), want: filepath.Join(tmp, "a")},
		{name: "STATUS_DIR alone", statusDir: filepath.Join(tmp, "b"), want: filepath.Join(tmp, "b")},
		{name: "default when both empty", want: wantDefault},
		{name: "existing directory gets leader_status", statusFile: existingDir, want: filepath.Join(existingDir, "leader_status")},
		{name: "existing directory as STATUS_DIR", statusDir: existingDir, want: filepath.Join(existingDir, "leader_status")},
		{name: "existing file stays", statusFile: existingFile, want: existingFile},
		{name: "missing path stays", statusFile: filepath.Join(tmp, "missing", "status"), want: filepath.Join(tmp, "missing", "status")},
		{name: "unclean path is cleaned", statusFile: tmp + "/./x/../status", want: filepath.Join(tmp, "status")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.statusFile, tt.statusDir)
			if err != nil {
				t.Fatalf("Resolve(%q, %q) error = %v", tt.statusFile, tt.statusDir, err)
			}
			if got != tt.want {
				t.Errorf("Resolve(%q, %q) = %q, want %q", tt.statusFile, tt.statusDir, got, tt.want)
			}
		})
	}
}

// TestResolveRefusesSymlink: a status file that is a symbolic link is
// refused with an error naming the path, its target and the rule; links
// before the last element are followed.
func TestResolveRefusesSymlink(t *testing.T) {
	tmp := t.TempDir()
	mkdir := func(p string) string {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	link := func(target, p string) string {
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	target := filepath.Join(tmp, "target")
	if err := os.WriteFile(target, []byte("x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	realDir := mkdir(filepath.Join(tmp, "real"))
	linkedDir := link(realDir, filepath.Join(tmp, "linked-dir"))
	mounted := mkdir(filepath.Join(tmp, "mounted"))
	inDir := link(target, filepath.Join(mounted, "leader_status"))

	tests := []struct {
		name                  string
		statusFile, statusDir string
		wantPath, wantTarget  string // in the error; "" wantPath: no error, the result is wantTarget
	}{
		{name: "link to a file", statusFile: link(target, filepath.Join(tmp, "file-link")), wantPath: filepath.Join(tmp, "file-link"), wantTarget: target},
		{name: "dangling link", statusFile: link(filepath.Join(tmp, "nowhere"), filepath.Join(tmp, "dangling")), wantPath: filepath.Join(tmp, "dangling"), wantTarget: filepath.Join(tmp, "nowhere")},
		{name: "link as STATUS_DIR", statusDir: filepath.Join(tmp, "file-link"), wantPath: filepath.Join(tmp, "file-link"), wantTarget: target},
		{name: "leader_status in a directory is a link", statusFile: mounted, wantPath: inDir, wantTarget: target},
		{name: "linked directory is followed", statusFile: linkedDir, wantTarget: filepath.Join(linkedDir, "leader_status")},
		{name: "link earlier in the path is followed", statusFile: filepath.Join(linkedDir, "status"), wantTarget: filepath.Join(linkedDir, "status")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.statusFile, tt.statusDir)
			if tt.wantPath == "" {
				if err != nil || got != tt.wantTarget {
					t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tt.statusFile, tt.statusDir, got, err, tt.wantTarget)
				}
				return
			}
			var pe *PathError
			if !errors.As(err, &pe) || pe.Path != tt.wantPath {
				t.Fatalf("Resolve(%q, %q) = %q, %v; want a *PathError for %s", tt.statusFile, tt.statusDir, got, err, tt.wantPath)
			}
			for _, w := range []string{strconv.Quote(tt.wantPath), "must not be a symbolic link", strconv.Quote(tt.wantTarget)} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Resolve() error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestResolveRefusesNUL(t *testing.T) {
	_, err := Resolve("/tmp/a\x00b", "")
	var pe *PathError
	if !errors.As(err, &pe) || !strings.Contains(err.Error(), "NUL") {
		t.Errorf("Resolve with a NUL byte: %v, want a *PathError about NUL", err)
	}
}

// TestResolveRelative cannot run in parallel: it changes the working directory.
func TestResolveRelative(t *testing.T) {
	wd := t.TempDir()
	if err := os.Mkdir(filepath.Join(wd, "dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(wd)
	// t.TempDir may be behind a symlink; Abs joins onto the working directory.
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name, in, want string
	}{
		{name: "relative file", in: "status", want: filepath.Join(cwd, "status")},
		{name: "relative directory", in: "dir", want: filepath.Join(cwd, "dir", "leader_status")},
		{name: "dot", in: ".", want: filepath.Join(cwd, "leader_status")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resolve(tt.in, "")
			if err != nil {
				t.Fatalf("Resolve(%q) error = %v", tt.in, err)
			}
			if !filepath.IsAbs(got) || got != tt.want {
				t.Errorf("Resolve(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func newFile(t *testing.T) (*File, string) {
	t.Helper()
	dir := t.TempDir()
	return New(filepath.Join(dir, "leader_status"), discard), dir
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func TestPublish(t *testing.T) {
	tests := []struct {
		name    string
		before  string // content of an existing file; "" for none
		publish []string
		want    string
	}{
		{name: "new file", publish: []string{"pod-0"}, want: "pod-0\n"},
		{name: "replaces a foreign file", before: "stale content that is longer\n", publish: []string{"pod-1"}, want: "pod-1\n"},
		{name: "twice", publish: []string{"pod-0", "pod-2"}, want: "pod-2\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, dir := newFile(t)
			if tt.before != "" {
				if err := os.WriteFile(f.Path(), []byte(tt.before), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			for _, id := range tt.publish {
				if err := f.Publish(id); err != nil {
					t.Fatalf("Publish(%q) error = %v", id, err)
				}
			}
			got, err := os.ReadFile(f.Path())
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("content = %q, want %q", got, tt.want)
			}
			fi, err := os.Stat(f.Path())
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != 0o644 {
				t.Errorf("mode = %v, want -rw-r--r--", fi.Mode())
			}
			if got := dirEntries(t, dir); !slices.Equal(got, []string{"leader_status"}) {
				t.Errorf("directory holds %q, want only leader_status (no temp files)", got)
			}
		})
	}
}

func TestWithdrawAndRemoveStale(t *testing.T) {
	tests := []struct {
		name    string
		publish bool
		remove  func(*File) error
	}{
		{name: "Withdraw published", publish: true, remove: (*File).Withdraw},
		{name: "Withdraw missing", remove: (*File).Withdraw},
		{name: "RemoveStale existing", publish: true, remove: (*File).RemoveStale},
		{name: "RemoveStale missing", remove: (*File).RemoveStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, dir := newFile(t)
			if tt.publish {
				if err := f.Publish("pod-0"); err != nil {
					t.Fatal(err)
				}
			}
			if err := tt.remove(f); err != nil {
				t.Fatalf("error = %v", err)
			}
			if _, err := os.Stat(f.Path()); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Stat after removal error = %v, want not exist", err)
			}
			if got := dirEntries(t, dir); len(got) != 0 {
				t.Errorf("directory holds %q, want nothing", got)
			}
		})
	}
}

func TestRemoveStaleError(t *testing.T) {
	// A non-empty directory at the path cannot be removed, even by root.
	f, _ := newFile(t)
	if err := os.Mkdir(f.Path(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.Path(), "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, remove := range map[string]func() error{"RemoveStale": f.RemoveStale, "Withdraw": f.Withdraw} {
		t.Run(name, func(t *testing.T) {
			err := remove()
			if err == nil || !strings.Contains(err.Error(), f.Path()) {
				t.Errorf("%s() error = %v, want one naming %s", name, err, f.Path())
			}
		})
	}
}

func TestPublishIntoMissingDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "leader_status")
	f := New(path, discard)
	err := f.Publish("pod-0")
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("Publish() error = %v, want one naming %s", err, path)
	}
}

func TestWritable(t *testing.T) {
	tests := []struct {
		name    string
		dir     func(t *testing.T) string
		wantErr bool
	}{
		{name: "temp dir", dir: func(t *testing.T) string { return t.TempDir() }},
		{name: "missing dir", dir: func(t *testing.T) string { return filepath.Join(t.TempDir(), "missing") }, wantErr: true},
		{name: "a file, not a dir", dir: func(t *testing.T) string {
			p := filepath.Join(t.TempDir(), "file")
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			return p
		}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := tt.dir(t)
			f := New(filepath.Join(dir, "leader_status"), discard)
			err := f.Writable()
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "not writable") {
					t.Errorf("Writable() error = %v, want one naming %s as not writable", err, dir)
				}
				return
			}
			if err != nil {
				t.Fatalf("Writable() error = %v", err)
			}
			if got := dirEntries(t, dir); len(got) != 0 {
				t.Errorf("Writable() left %q behind", got)
			}
		})
	}
}

// lostRecorder collects the errors a Watcher reports.
type lostRecorder struct {
	mu   sync.Mutex
	errs []error
}

func (r *lostRecorder) onLost(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, err)
}

func (r *lostRecorder) get() []error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.errs)
}

// startWatcher watches f and runs the watcher until stop is called or the
// test ends. Watch returns once the directory is watched, so nothing done
// after startWatcher returns is missed.
func startWatcher(t *testing.T, f *File) (lost *lostRecorder, stop func()) {
	t.Helper()
	g, err := f.Watch()
	if err != nil {
		t.Fatalf("Watch() error = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	lost = &lostRecorder{}
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx, lost.onLost) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run() = %v after cancel, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Run() did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return lost, stop
}

// hasContent reports whether path is a regular file holding want.
func hasContent(path, want string) func() bool {
	return func() bool {
		if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
			return false
		}
		got, err := os.ReadFile(path)
		return err == nil && string(got) == want
	}
}

func TestWatcherRestores(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, path string)
	}{
		{name: "deleted", tamper: func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "overwritten", tamper: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("someone-else\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "truncated", tamper: func(t *testing.T, path string) {
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by a link to the right content", tamper: func(t *testing.T, path string) {
			other := filepath.Join(t.TempDir(), "other")
			if err := os.WriteFile(other, []byte("pod-0\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			// Atomically, so that the watcher only ever sees the link.
			tmp := filepath.Join(filepath.Dir(path), "link")
			if err := os.Symlink(other, tmp); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "replaced by rename", tamper: func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other")
			if err := os.WriteFile(other, []byte("someone-else\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, _ := newFile(t)
			if err := f.Publish("pod-0"); err != nil {
				t.Fatal(err)
			}
			lost, _ := startWatcher(t, f)

			tt.tamper(t, f.Path())
			eventually(t, "the status file is restored", hasContent(f.Path(), "pod-0\n"))
			if errs := lost.get(); len(errs) != 0 {
				t.Errorf("onLost called with %v, want no calls", errs)
			}
		})
	}
}

func TestWatcherIgnoresWithdrawnFile(t *testing.T) {
	f, dir := newFile(t)
	if err := f.Publish("pod-0"); err != nil {
		t.Fatal(err)
	}
	lost, stop := startWatcher(t, f)
	if err := f.Withdraw(); err != nil {
		t.Fatal(err)
	}

	// A file someone else creates at the path after Withdraw is left alone,
	// as is its removal, and unrelated files in the directory.
	foreign := "someone-else\n"
	if err := os.WriteFile(f.Path(), []byte(foreign), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "unrelated"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The watcher has nothing to observe when it rightly does nothing; give it
	// time to act wrongly before checking.
	time.Sleep(200 * time.Millisecond)
	if got, err := os.ReadFile(f.Path()); err != nil || string(got) != foreign {
		t.Errorf("after Withdraw, foreign file content = %q (err %v), want %q", got, err, foreign)
	}

	if err := os.Remove(f.Path()); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "unrelated")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	stop()
	if _, err := os.Stat(f.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Withdraw, deleted status file: Stat error = %v, want not exist", err)
	}
	if got := dirEntries(t, dir); len(got) != 0 {
		t.Errorf("directory holds %q, want nothing", got)
	}
	if errs := lost.get(); len(errs) != 0 {
		t.Errorf("onLost called with %v, want no calls", errs)
	}
}

func TestWatcherReportsLoss(t *testing.T) {
	f, dir := newFile(t)
	if err := f.Publish("pod-0"); err != nil {
		t.Fatal(err)
	}
	lost, stop := startWatcher(t, f)

	// Put a non-empty directory where the file was: renaming the temp file
	// onto it fails even for root. The watcher may restore the file between Remove
	// and Mkdir; retry until the directory wins.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := os.Remove(f.Path()); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
		err := os.Mkdir(f.Path(), 0o755)
		if err == nil {
			break
		}
		if !errors.Is(err, os.ErrExist) || time.Now().After(deadline) {
			t.Fatalf("replace status file by a directory: %v", err)
		}
	}
	if err := os.WriteFile(filepath.Join(f.Path(), "inside"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	eventually(t, "onLost is called", func() bool { return len(lost.get()) > 0 })
	// Stop the watcher so that no restore is in progress when checking for leftovers.
	stop()
	for _, err := range lost.get() {
		if err == nil || !strings.Contains(err.Error(), f.Path()) {
			t.Errorf("onLost(%v), want an error naming %s", err, f.Path())
		}
	}
	fi, err := os.Stat(f.Path())
	if err != nil || !fi.IsDir() {
		t.Errorf("Stat(%s) = %v, %v; want the directory left in place", f.Path(), fi, err)
	}
	// Failed restores must not leave temp files behind.
	if got := dirEntries(t, dir); !slices.Equal(got, []string{"leader_status"}) {
		t.Errorf("directory holds %q, want only leader_status", got)
	}
}

func TestWatchMissingDirectory(t *testing.T) {
	f := New(filepath.Join(t.TempDir(), "missing", "leader_status"), discard)
	g, err := f.Watch()
	if dir := filepath.Dir(f.Path()); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Watch() = %v, %v; want an error naming %s", g, err, dir)
	}
}
