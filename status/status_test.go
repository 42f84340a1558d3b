package status

import (
	"context"
	"errors"
	"io"
	"k8s.io/apimachinery/pkg/util/wait"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// eventually polls cond every 10ms until it holds or 5s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 10*time.Millisecond, 5*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting until %s", what)
	}
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

// lostRecorder collects the errors Guard reports.
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

// startGuard runs f.Guard until stop is called or the test ends, and returns
// once it watches. f must be published with identity. Guard has no ready
// signal, so tamper with the file until it gets restored.
func startGuard(t *testing.T, f *File, identity string) (lost *lostRecorder, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	lost = &lostRecorder{}
	done := make(chan error, 1)
	go func() { done <- f.Guard(ctx, lost.onLost) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Guard() = %v after cancel, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Error("Guard() did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)

	want := identity + "\n"
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := os.WriteFile(f.Path(), []byte("tampered\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		for range 10 {
			time.Sleep(10 * time.Millisecond)
			if got, err := os.ReadFile(f.Path()); err == nil && string(got) == want {
				return lost, stop
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("Guard did not start restoring the status file")
		}
	}
}

func hasContent(path, want string) func() bool {
	return func() bool {
		got, err := os.ReadFile(path)
		return err == nil && string(got) == want
	}
}

func TestGuardRestores(t *testing.T) {
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
			lost, _ := startGuard(t, f, "pod-0")

			tt.tamper(t, f.Path())
			eventually(t, "the status file is restored", hasContent(f.Path(), "pod-0\n"))
			if errs := lost.get(); len(errs) != 0 {
				t.Errorf("onLost called with %v, want no calls", errs)
			}
		})
	}
}

func TestGuardIgnoresWithdrawnFile(t *testing.T) {
	f, dir := newFile(t)
	if err := f.Publish("pod-0"); err != nil {
		t.Fatal(err)
	}
	lost, stop := startGuard(t, f, "pod-0")
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
	// Guard has nothing to observe when it rightly does nothing; give it
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

func TestGuardReportsLoss(t *testing.T) {
	f, dir := newFile(t)
	if err := f.Publish("pod-0"); err != nil {
		t.Fatal(err)
	}
	lost, stop := startGuard(t, f, "pod-0")

	// Put a non-empty directory where the file was: renaming the temp file
	// onto it fails even for root. Guard may restore the file between Remove
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
	// Stop Guard so that no restore is in progress when checking for leftovers.
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

func TestGuardMissingDirectory(t *testing.T) {
	f := New(filepath.Join(t.TempDir(), "missing", "leader_status"), discard)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	err := f.Guard(ctx, func(err error) { t.Errorf("onLost(%v) called", err) })
	if dir := filepath.Dir(f.Path()); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Guard() error = %v, want one naming %s", err, dir)
	}
}
