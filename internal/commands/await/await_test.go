package await

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/status"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// errStillWaiting ends the waits that must not return on their own.
var errStillWaiting = errors.New("still waiting")

// waitBriefly runs Wait with a deadline long enough for a watch event to be
// handled; errStillWaiting means Wait had not returned by then.
func waitBriefly(t *testing.T, path string, want Role) error {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 200*time.Millisecond, errStillWaiting)
	defer cancel()
	return Wait(ctx, path, want)
}

// TestWaitChecksTheFileFirst: what is at the path when Wait starts decides
// at once, for both roles; only a regular, non-empty file says leader, and
// only nothing at all says follower.
func TestWaitChecksTheFileFirst(t *testing.T) {
	tests := []struct {
		name     string
		make     func(t *testing.T, path string)
		leader   bool // Wait(Leader) returns at once
		follower bool // Wait(Follower) returns at once
	}{
		{name: "no file", make: func(*testing.T, string) {}, follower: true},
		{name: "file with identity", make: func(t *testing.T, p string) { write(t, p, "pod-0\n") }, leader: true},
		{name: "empty file", make: func(t *testing.T, p string) { write(t, p, "") }},
		{name: "symbolic link to a file", make: func(t *testing.T, p string) {
			target := filepath.Join(filepath.Dir(p), "target")
			write(t, target, "pod-0\n")
			if err := os.Symlink(target, p); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "directory", make: func(t *testing.T, p string) {
			if err := os.Mkdir(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "leader_status")
			tt.make(t, path)
			for _, c := range []struct {
				role Role
				want bool
			}{{Leader, tt.leader}, {Follower, tt.follower}} {
				err := waitBriefly(t, path, c.role)
				switch {
				case c.want && err != nil:
					t.Errorf("Wait(%s) = %v, want it to return at once", c.role, err)
				case !c.want && !errors.Is(err, errStillWaiting):
					t.Errorf("Wait(%s) = %v, want it still waiting", c.role, err)
				}
			}
		})
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestWaitFollowsTheSidecarsWrites: await sees the file as the sidecar's own
// status.File publishes and withdraws it, by rename and removal.
func TestWaitFollowsTheSidecarsWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leader_status")
	f := status.New(path, discard)
	for _, step := range []struct {
		want Role
		do   func() error
	}{
		{Leader, func() error { return f.Publish("pod-0") }},
		{Follower, f.Withdraw},
		{Leader, func() error { return f.Publish("pod-1") }},
	} {
		g, err := Watch(path)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- g.Until(t.Context(), step.want) }()
		if err := waitBriefly(t, path, step.want); !errors.Is(err, errStillWaiting) {
			t.Fatalf("before the change, Wait(%s) = %v, want it still waiting", step.want, err)
		}
		if err := step.do(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Until(%s) = %v", step.want, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Until(%s) did not return within 5s of the change", step.want)
		}
		_ = g.Close()
	}
}

// TestWaitLatency measures the time from the status file appearing (the
// rename that publishes it, as the sidecar writes it) to Until returning,
// and from its removal to Until(Follower) returning. The target is 50 ms;
// the figures are printed, and only a hang (1 s) fails the test.
func TestWaitLatency(t *testing.T) {
	const runs = 20
	dir := t.TempDir()
	path := filepath.Join(dir, "leader_status")
	var appear, disappear []time.Duration
	for range runs {
		appear = append(appear, measure(t, path, Leader, func() time.Time {
			tmp := filepath.Join(dir, ".leader_status.tmp")
			write(t, tmp, "pod-0\n")
			start := time.Now()
			if err := os.Rename(tmp, path); err != nil {
				t.Fatal(err)
			}
			return start
		}))
		disappear = append(disappear, measure(t, path, Follower, func() time.Time {
			start := time.Now()
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			return start
		}))
	}
	for _, m := range []struct {
		what string
		d    []time.Duration
	}{{"status file appears -> await --leader returns", appear}, {"status file removed -> await --follower returns", disappear}} {
		slices.Sort(m.d)
		t.Logf("%s: n=%d p50 %s, max %s (target: 50ms)", m.what, len(m.d), m.d[len(m.d)/2], m.d[len(m.d)-1])
		if m.d[len(m.d)-1] > time.Second {
			t.Errorf("%s: max %s, more than 1s: a hang", m.what, m.d[len(m.d)-1])
		}
	}
}

// measure starts waiting for want on an established watch, lets change
// happen (it returns when the change started) and returns how long after
// that Until returned.
func measure(t *testing.T, path string, want Role, change func() time.Time) time.Duration {
	t.Helper()
	g, err := Watch(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	returned := make(chan time.Time, 1)
	go func() {
		if err := g.Until(t.Context(), want); err != nil {
			t.Errorf("Until(%s) = %v", want, err)
		}
		returned <- time.Now()
	}()
	start := change()
	select {
	case end := <-returned:
		return end.Sub(start)
	case <-time.After(5 * time.Second):
		t.Fatalf("Until(%s) did not return within 5s", want)
		return 0
	}
}

// TestWaitFailsWhenTheDirectoryGoes: a removed directory can never hold the
// file, so waiting for a leader ends with an error instead of forever.
func TestWaitFailsWhenTheDirectoryGoes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "emptydir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "leader_status")
	g, err := Watch(path)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	done := make(chan error, 1)
	go func() { done <- g.Until(t.Context(), Leader) }()
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Until(leader) = nil after the directory was removed, want an error")
		}
		t.Logf("Until(leader) after the directory was removed: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("Until(leader) did not return within 5s of the directory's removal")
	}
}

// TestWatchOfAMissingDirectoryFails: nothing can appear there; the error
// names the directory.
func TestWatchOfAMissingDirectoryFails(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	_, err := Watch(filepath.Join(dir, "leader_status"))
	if err == nil {
		t.Fatal("Watch in a missing directory = nil error")
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Watch in a missing directory = %v, want it to wrap ErrNotExist", err)
	}
}
