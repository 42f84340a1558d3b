package sidecar

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/outputs/gatekeeper"
)

// These tests run real commands, so they run on the real clock, outside a
// synctest bubble (a goroutine waiting for a child process is blocked in a
// system call, which stops the bubble's time), with short timings.

// commandConfig runs script, a /bin/sh script with $DIR set to dir, as the
// gatekeeper's command.
func commandConfig(t *testing.T, dir, script string) config.Config {
	t.Helper()
	path := filepath.Join(dir, "cmd.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DIR", dir) // the command inherits the sidecar's environment
	cfg := testConfig(t)
	cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = 3*time.Second, 2*time.Second, 500*time.Millisecond
	cfg.Command = []string{"/bin/sh", path}
	cfg.CommandStopGrace = 5 * time.Second
	return cfg
}

// startReal runs a sidecar on the real clock; Cleanup stops it.
func startReal(t *testing.T, cfg config.Config, c *cluster) *running {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	r := run(t, cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Pods: c.CoreV1().Pods(ns), Log: log, Health: newIdleListener(nil)})
	t.Cleanup(func() {
		r.cancel()
		select {
		case err := <-r.done:
			r.done <- err
		case <-time.After(time.Minute):
			t.Error("Run did not return a minute after its context ended")
		}
	})
	return r
}

func (r *running) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(time.Minute):
		t.Fatal("Run did not return within a minute")
		return nil
	}
}

func waitFile(t *testing.T, path string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(path); err == nil && strings.HasSuffix(string(b), "\n") {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not written within 30s", path)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCommandExitingReleasesAndEndsTheSidecar: the command starts once the
// status file exists; when it exits on its own, the sidecar steps down,
// releases the Lease and returns the command's status.
func TestCommandExitingReleasesAndEndsTheSidecar(t *testing.T) {
	dir := t.TempDir()
	cfg := commandConfig(t, dir, `cat "$1" > "$DIR/seen"; exit 5`)
	cfg.Command = append(cfg.Command, cfg.StatusFile)
	c := newCluster(t)
	r := startReal(t, cfg, c)
	err := r.result(t)
	var exit *gatekeeper.ExitError
	if !errors.As(err, &exit) || exit.Code != 5 {
		t.Fatalf("Run = %v, want the command's exit status 5", err)
	}
	if seen := waitFile(t, filepath.Join(dir, "seen")); seen != "pod-a\n" {
		t.Errorf("the command saw the status file hold %q, want it written before the command started", seen)
	}
	if h := holder(c.lease(t)); h != "" {
		t.Errorf("holder = %q after the command exited, want the Lease released", h)
	}
	if _, err := os.Stat(cfg.StatusFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("status file after the command exited: %v, want it removed", err)
	}
}

// TestForwardedSIGTERMReleasesOnceTheCommandStopped: the sidecar keeps the
// Lease while the command shuts down, then releases it and returns the
// command's status.
func TestForwardedSIGTERMReleasesOnceTheCommandStopped(t *testing.T) {
	dir := t.TempDir()
	cfg := commandConfig(t, dir, `trap 'kill $! 2>/dev/null; echo term > "$DIR/term"; sleep 1; echo > "$DIR/exiting"; exit 0' TERM
echo $$ > "$DIR/pid"
while :; do sleep 0.05 & wait $!; done
`)
	c := newCluster(t)
	var released, releasedAfterExit atomic.Bool
	c.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
		if holder(l) == "" && !released.Swap(true) {
			releasedAfterExit.Store(fileExists(filepath.Join(dir, "exiting")))
		}
		return false, nil, nil
	})
	r := startReal(t, cfg, c)
	waitFile(t, filepath.Join(dir, "pid"))
	if !r.s.Forward(syscall.SIGTERM) {
		t.Fatal("Forward = false with the command running")
	}
	err := r.result(t)
	var exit *gatekeeper.ExitError
	if !errors.As(err, &exit) || exit.Code != 0 {
		t.Fatalf("Run = %v, want the command's exit status 0", err)
	}
	if !fileExists(filepath.Join(dir, "term")) {
		t.Error("the command got no SIGTERM")
	}
	if h := holder(c.lease(t)); h != "" || !released.Load() {
		t.Errorf("holder = %q after the command stopped, want the Lease released", h)
	}
	if !releasedAfterExit.Load() {
		t.Error("the Lease was released before the command had stopped")
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// TestLostLeadershipStopsTheCommand: when renewals fail past the renew
// deadline, the sidecar steps down, SIGTERMs the command and returns
// ErrLeadershipLost, so that it exits non-zero and restarts as a candidate.
func TestLostLeadershipStopsTheCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := commandConfig(t, dir, `trap 'kill $! 2>/dev/null; echo term > "$DIR/term"; exit 0' TERM
echo $$ > "$DIR/pid"
while :; do sleep 0.05 & wait $!; done
`)
	c := newCluster(t)
	var apiDown atomic.Bool
	c.PrependReactor("*", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		if apiDown.Load() {
			return true, nil, errors.New("the API server is unreachable")
		}
		return false, nil, nil
	})
	r := startReal(t, cfg, c)
	waitFile(t, filepath.Join(dir, "pid"))
	apiDown.Store(true)
	err := r.result(t)
	if !errors.Is(err, gatekeeper.ErrLeadershipLost) {
		t.Fatalf("Run = %v, want ErrLeadershipLost", err)
	}
	if !fileExists(filepath.Join(dir, "term")) {
		t.Error("the command got no SIGTERM")
	}
	if fileExists(cfg.StatusFile) {
		t.Error("the status file stayed after leadership was lost")
	}
}

// TestFollowerRunsNoCommandAndServesTheStatusEndpoint: with another holder,
// the command never starts, SIGTERM is not forwarded, and the status
// endpoint answers ok.
func TestFollowerRunsNoCommandAndServesTheStatusEndpoint(t *testing.T) {
	dir := t.TempDir()
	cfg := commandConfig(t, dir, `echo started > "$DIR/started"`)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.StatusEndpoint = ln.Addr().String()
	ln.Close() // the sidecar listens there; another test could take it first, then this one fails
	c := newCluster(t)
	other := testConfig(t)
	other.Identity, other.PodName = "pod-b", "pod-b"
	otherRun := startReal(t, other, c) // pod-b leads, without a command
	for {
		l, err := c.CoordinationV1().Leases(ns).Get(context.Background(), "lock", metav1.GetOptions{})
		if err == nil && holder(l) == "pod-b" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := startReal(t, cfg, c)
	var code int
	var body string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get("http://" + cfg.StatusEndpoint + "/any/path")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code, body = resp.StatusCode, string(b)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code != 200 || body != `{"status": "ok"}` {
		t.Errorf("status endpoint = %d %q, want 200 {\"status\": \"ok\"}", code, body)
	}
	if r.s.Forward(syscall.SIGTERM) {
		t.Error("Forward = true on a follower")
	}
	r.cancel()
	if err := r.result(t); err != nil {
		t.Errorf("Run = %v, want nil: the follower ran no command", err)
	}
	if fileExists(filepath.Join(dir, "started")) {
		t.Error("the command ran on a follower")
	}
	otherRun.cancel()
}

// TestCommandThatCannotStartEndsTheSidecar: the Lease is given back and the
// sidecar returns 127, as a shell would, instead of campaigning again.
func TestCommandThatCannotStartEndsTheSidecar(t *testing.T) {
	cfg := commandConfig(t, t.TempDir(), "")
	cfg.Command = []string{filepath.Join(t.TempDir(), "missing")}
	c := newCluster(t)
	r := startReal(t, cfg, c)
	err := r.result(t)
	var exit *gatekeeper.ExitError
	if !errors.As(err, &exit) || exit.Code != 127 || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("Run = %v, want exit code 127 naming the command", err)
	}
	if h := holder(c.lease(t)); h != "" {
		t.Errorf("holder = %q, want the Lease given back", h)
	}
}
