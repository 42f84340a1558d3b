package gatekeeper

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/testutil"
)

// harness runs one Gatekeeper's Run on real child processes: shell scripts
// in a temporary directory, which write marker files there.
type harness struct {
	t      *testing.T
	g      *Gatekeeper
	dir    string
	cancel context.CancelFunc
	done   chan error
	out    *testutil.SyncBuffer
}

// newHarness starts Run for a gatekeeper of script, a /bin/sh script run
// with $DIR set to the test's directory. Cleanup stops Run, which stops the
// command, and fails the test if that hangs.
func newHarness(t *testing.T, script string, grace time.Duration) *harness {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "cmd.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	return newHarnessFor(t, dir, []string{"/bin/sh", path, "arg one"}, grace)
}

func newHarnessFor(t *testing.T, dir string, command []string, grace time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, dir: dir, done: make(chan error, 1), out: &testutil.SyncBuffer{}}
	g, err := New(Config{Command: command, StopGrace: grace, Stdout: h.out, Stderr: h.out,
		Env: append(os.Environ(), "DIR="+dir), Log: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	h.g = g
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-h.done:
		case <-time.After(30 * time.Second):
			t.Errorf("Run did not return 30s after its context ended")
		}
	})
	return h
}

// result waits for Run's result.
func (h *harness) result() error {
	h.t.Helper()
	select {
	case err := <-h.done:
		h.done <- err // for Cleanup
		return err
	case <-time.After(30 * time.Second):
		h.t.Fatal("Run did not return within 30s")
		return nil
	}
}

// lead calls Lead as the sidecar does once the Lease was won.
func (h *harness) lead() error {
	return h.g.Lead(context.Background(), election.State{Identity: "pod-0", Leader: "pod-0", IsLeader: true})
}

// waitFile waits until the script wrote name, and returns its content.
func (h *harness) waitFile(name string) string {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(h.dir, name))
		if err == nil && strings.HasSuffix(string(b), "\n") {
			return string(b)
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the command did not write %s within 10s; its output: %q", name, h.out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// exists reports whether the script wrote name.
func (h *harness) exists(name string) bool {
	_, err := os.Stat(filepath.Join(h.dir, name))
	return err == nil
}

// pid is the command's process ID, which the scripts write to "pid".
func (h *harness) pid() int {
	h.t.Helper()
	pid, err := strconv.Atoi(strings.TrimSpace(h.waitFile("pid")))
	if err != nil {
		h.t.Fatal(err)
	}
	return pid
}

// assertGone checks that the process is neither running nor a zombie:
// signal 0 reaches a zombie, so ESRCH means it was reaped.
func assertGone(t *testing.T, pid int) {
	t.Helper()
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("process %d is still there (kill -0: %v)", pid, err)
	}
}

func wantExit(t *testing.T, err error, code int) {
	t.Helper()
	var exit *ExitError
	if !errors.As(err, &exit) || exit.Code != code {
		t.Fatalf("Run = %v, want an *ExitError with code %d", err, code)
	}
}

// Scripts. Each writes its PID to $DIR/pid. A script that traps SIGTERM
// waits in short background sleeps: dash runs a trap only once the
// foreground command ended, and misses a signal that arrives just before
// "wait" until the child exits. Its trap kills the sleep, so that nothing is
// left behind.
const (
	// termExits3 exits 3 on SIGTERM.
	termExits3 = `trap 'kill $! 2>/dev/null; echo term >> "$DIR/term"; exit 3' TERM
echo $$ > "$DIR/pid"
while :; do sleep 0.05 & wait $!; done
`
	// plainWait dies of an untrapped SIGTERM.
	plainWait = `echo $$ > "$DIR/pid"
exec sleep 1000
`
	// ignoresTerm ignores SIGTERM, and so does the sleep it becomes.
	ignoresTerm = `trap '' TERM
echo $$ > "$DIR/pid"
exec sleep 1000
`
)

func TestFollowerStartsNothing(t *testing.T) {
	h := newHarness(t, `echo $$ > "$DIR/pid"; echo started > "$DIR/started"`, time.Minute)
	if h.g.Forward(syscall.SIGTERM) {
		t.Error("Forward = true without a command")
	}
	if err := h.g.Follow(context.Background(), election.State{Identity: "pod-0", Leader: "pod-1"}); err != nil {
		t.Errorf("Follow = %v without a command", err)
	}
	h.cancel()
	if err := h.result(); err != nil {
		t.Errorf("Run = %v, want nil: no command ran", err)
	}
	if h.exists("started") {
		t.Error("the command ran without Lead")
	}
	if err := h.lead(); err == nil {
		t.Error("Lead after Run returned started the command")
	}
	if h.exists("started") {
		t.Error("the command ran after Run returned")
	}
}

func TestLeadStartsTheCommandWhichExitsOnItsOwn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		code   int
	}{
		{"success", `exit 0`, 0},
		{"failure", `exit 7`, 7},
		{"signal", `kill -USR1 $$`, 128 + int(syscall.SIGUSR1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, `echo $$ > "$DIR/pid"; echo "args: $1; stdin: $(cat)"; `+tc.script, time.Minute)
			if err := h.lead(); err != nil {
				t.Fatalf("Lead = %v", err)
			}
			err := h.result()
			wantExit(t, err, tc.code)
			if got, want := h.out.String(), "args: arg one; stdin: \n"; got != want {
				t.Errorf("the command wrote %q, want %q", got, want)
			}
			assertGone(t, h.pid())
			if err := h.lead(); err == nil {
				t.Error("a second Lead started the command again")
			}
		})
	}
}

func TestForwardedSignalEndsTheCommandWithItsStatus(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		code   int
	}{
		{"trapped", termExits3, 3},
		{"untrapped", plainWait, 128 + int(syscall.SIGTERM)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.script, time.Minute)
			if err := h.lead(); err != nil {
				t.Fatalf("Lead = %v", err)
			}
			pid := h.pid() // also: the trap is set
			if !h.g.Forward(syscall.SIGTERM) {
				t.Fatal("Forward = false with a running command")
			}
			wantExit(t, h.result(), tc.code)
			if tc.code == 3 && h.waitFile("term") != "term\n" {
				t.Error("the trap ran more than once")
			}
			assertGone(t, pid)
			if h.g.Forward(syscall.SIGTERM) {
				t.Error("Forward = true after the command exited")
			}
		})
	}
}

func TestForwardedSignalIgnoredIsKilledAfterGrace(t *testing.T) {
	h := newHarness(t, ignoresTerm, 100*time.Millisecond)
	if err := h.lead(); err != nil {
		t.Fatalf("Lead = %v", err)
	}
	pid := h.pid()
	if !h.g.Forward(syscall.SIGTERM) {
		t.Fatal("Forward = false with a running command")
	}
	wantExit(t, h.result(), 128+int(syscall.SIGKILL))
	assertGone(t, pid)
}

func TestFollowStopsTheCommand(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script string
		grace  time.Duration
		ctx    time.Duration // Follow's context; 0: none
	}{
		{"exits on SIGTERM", termExits3, time.Minute, 0},
		{"ignores SIGTERM: killed after the grace", ignoresTerm, 100 * time.Millisecond, 0},
		{"ignores SIGTERM: killed when Follow's context ends", ignoresTerm, time.Hour, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.script, tc.grace)
			if err := h.lead(); err != nil {
				t.Fatalf("Lead = %v", err)
			}
			pid := h.pid()
			ctx := context.Background()
			if tc.ctx > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.ctx)
				defer cancel()
			}
			if err := h.g.Follow(ctx, election.State{Identity: "pod-0"}); err != nil {
				t.Errorf("Follow = %v", err)
			}
			assertGone(t, pid) // Follow returns once the command was reaped
			if err := h.result(); !errors.Is(err, ErrLeadershipLost) {
				t.Errorf("Run = %v, want ErrLeadershipLost", err)
			}
			if tc.script == termExits3 && !h.exists("term") {
				t.Error("the command got no SIGTERM")
			}
			if err := h.lead(); err == nil {
				t.Error("Lead after the command was stopped started it again")
			}
		})
	}
}

func TestRunStopsTheCommandWhenItsContextEnds(t *testing.T) {
	h := newHarness(t, termExits3, time.Minute)
	if err := h.lead(); err != nil {
		t.Fatalf("Lead = %v", err)
	}
	pid := h.pid()
	h.cancel()
	wantExit(t, h.result(), 3)
	if !h.exists("term") {
		t.Error("the command got no SIGTERM")
	}
	assertGone(t, pid)
}

func TestCommandThatCannotStart(t *testing.T) {
	dir := t.TempDir()
	notExecutable := filepath.Join(dir, "plain-file")
	if err := os.WriteFile(notExecutable, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		command string
		code    int
		want    string
	}{
		{"not in PATH", "leader-elector-no-such-command", 127, "executable file not found"},
		{"no such file", filepath.Join(dir, "missing"), 127, "no such file"},
		{"not executable", notExecutable, 126, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarnessFor(t, dir, []string{tc.command}, time.Minute)
			err := h.lead()
			if err == nil || !strings.Contains(err.Error(), tc.command) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Lead = %v, want an error naming %s and saying %q", err, tc.command, tc.want)
			}
			wantExit(t, h.result(), tc.code)
			if h.g.Forward(syscall.SIGTERM) {
				t.Error("Forward = true without a command")
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"no command", Config{StopGrace: time.Second}, "Command is required"},
		{"empty name", Config{Command: []string{""}, StopGrace: time.Second}, "Command is required"},
		{"no grace", Config{Command: []string{"true"}}, "StopGrace must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New = %v, want %q", err, tc.want)
			}
		})
	}
}

// forks is an `sh -c` that does not exec: its child, and that child's own
// child, are what a leadership loss must end too.
const forks = `sleep 1000 &
echo $! > "$DIR/child"
sh -c 'sleep 1000 & echo $! > "$DIR/grandchild"; wait' &
echo $$ > "$DIR/pid"
wait
`

// TestFollowEndsTheCommandsWholeTree: the command's children, and theirs,
// end with leadership: every signal goes to the command's process group,
// and Follow returns once the group is empty and reaped. Before, only the
// direct child got them, and a forking command kept running on a replica
// that no longer led while the next leader started its own.
func TestFollowEndsTheCommandsWholeTree(t *testing.T) {
	for _, grace := range []time.Duration{time.Minute, 100 * time.Millisecond} {
		t.Run(grace.String(), func(t *testing.T) {
			script := forks
			if grace < time.Second { // the children ignore SIGTERM: SIGKILL after the grace
				script = "trap '' TERM\n" + forks
			}
			h := newHarness(t, script, grace)
			if err := h.lead(); err != nil {
				t.Fatalf("Lead = %v", err)
			}
			pids := []int{h.pid()}
			for _, name := range []string{"child", "grandchild"} {
				pid, err := strconv.Atoi(strings.TrimSpace(h.waitFile(name)))
				if err != nil {
					t.Fatal(err)
				}
				pids = append(pids, pid)
			}
			t.Cleanup(func() { killIfFailed(t, pids) })
			if err := h.g.Follow(context.Background(), election.State{Identity: "pod-0"}); err != nil {
				t.Errorf("Follow = %v", err)
			}
			for _, pid := range pids {
				assertGone(t, pid)
			}
		})
	}
}

// TestCommandExitingLeavesNoTree: a command that exits on its own while
// its children run takes them with it before Run reports its status (and
// the sidecar gives up the Lease).
func TestCommandExitingLeavesNoTree(t *testing.T) {
	h := newHarness(t, `sleep 1000 &
echo $! > "$DIR/child"
echo $$ > "$DIR/pid"
exit 3
`, time.Minute)
	if err := h.lead(); err != nil {
		t.Fatalf("Lead = %v", err)
	}
	child, err := strconv.Atoi(strings.TrimSpace(h.waitFile("child")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { killIfFailed(t, []int{child}) })
	wantExit(t, h.result(), 3)
	assertGone(t, child)
}

// killIfFailed SIGKILLs pids once a failed test is done with them, so that
// it leaves no process behind; a passing test's pids are reaped already,
// and may be another process's by now.
func killIfFailed(t *testing.T, pids []int) {
	if !t.Failed() {
		return
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
