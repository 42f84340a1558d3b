package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/internal/leasestore"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// Helpers of the tests of handovers on purpose: apps whose health the test sets, the
// Lease's annotations, and `leader-elector resign` run as in the sidecar's
// container.

// app stands for one replica's app: a health endpoint in the test process
// that answers 200 while healthy and 503 otherwise.
type app struct {
	srv *httptest.Server
	bad atomic.Bool
}

// newApps starts n healthy apps. Call it before the fleet is made, so that
// the apps outlive the sidecars that check them (cleanups run in reverse).
func newApps(t *testing.T, n int) []*app {
	t.Helper()
	apps := make([]*app, n)
	for i := range apps {
		a := &app{}
		a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if a.bad.Load() {
				http.Error(w, "unhealthy", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		}))
		t.Cleanup(a.srv.Close)
		apps[i] = a
	}
	return apps
}

func (a *app) setHealthy(ok bool) { a.bad.Store(!ok) }

// env is the sidecar's app-health configuration for this app: a check every
// 200ms, unhealthy after 2 failures, healthy after 1 pass, no step-down
// within 1s of acquiring.
func (a *app) env() []string {
	return []string{
		"APP_HEALTH_URL=" + a.srv.URL + "/healthz",
		"APP_HEALTH_PERIOD=200ms", "APP_HEALTH_TIMEOUT=200ms",
		"APP_HEALTH_FAILURES=2", "APP_HEALTH_SUCCESSES=1", "APP_HEALTH_MIN_TERM=1s",
	}
}

// podUID returns the UID of pod, as the Downward API gives it as POD_UID.
func (f *fleet) podUID(pod string) string {
	f.t.Helper()
	p, err := cp.Admin.CoreV1().Pods(f.ns).Get(f.t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return string(p.UID)
}

// leaseView is what the tests read of the Lease.
type leaseView struct {
	holder, holderUID, standby string
	transitions                int32
	acquired                   time.Time
}

func (f *fleet) lease(ctx context.Context) (leaseView, error) {
	l, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil {
		return leaseView{}, err
	}
	v := leaseView{holderUID: l.Annotations[leasestore.AnnotationHolderUID], standby: l.Annotations[leasestore.AnnotationStandby]}
	if h := l.Spec.HolderIdentity; h != nil {
		v.holder = *h
	}
	if n := l.Spec.LeaseTransitions; n != nil {
		v.transitions = *n
	}
	if a := l.Spec.AcquireTime; a != nil {
		v.acquired = a.Time
	}
	return v, nil
}

// waitStandby waits until the Lease names a standby other than not, and
// returns it.
func (f *fleet) waitStandby(timeout time.Duration, not string) string {
	f.t.Helper()
	var v leaseView
	var err error
	if !eventually(timeout, func() bool {
		v, err = f.lease(f.t.Context())
		return err == nil && v.standby != "" && v.standby != not
	}) {
		f.t.Fatalf("no standby offered within %s: lease %+v (%v)", timeout, v, err)
	}
	return v.standby
}

// field returns the value at path in a decoded /status, or nil.
func field(st map[string]any, path ...string) any {
	var v any = st
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

// waitStatus waits until cond holds for the /status of s.
func waitStatus(t *testing.T, s *testcluster.Sidecar, timeout time.Duration, what string, cond func(map[string]any) bool) map[string]any {
	t.Helper()
	var st map[string]any
	var err error
	if !eventually(timeout, func() bool {
		st, err = s.Status()
		return err == nil && cond(st)
	}) {
		t.Fatalf("/status of %s: not %s within %s: %v (%v)", s.Opts.Pod, what, timeout, st, err)
	}
	return st
}

// resignRun is one run of `leader-elector resign` in a sidecar's container.
type resignRun struct {
	cmd         *exec.Cmd
	out, errOut bytes.Buffer
	started     time.Time
}

// startResign starts `leader-elector resign args...` with the environment of
// the running sidecar s, as `kubectl exec POD -c leader-elector` runs it: it
// finds the control socket as the sidecar does.
func startResign(t *testing.T, s *testcluster.Sidecar, args ...string) *resignRun {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(s.Pid()) + "/environ")
	if err != nil {
		t.Fatalf("read the environment of %s: %v", s.Opts.Pod, err)
	}
	r := &resignRun{cmd: exec.Command(binary, append([]string{"resign"}, args...)...)}
	r.cmd.Env = strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.errOut
	r.started = time.Now()
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			_ = r.cmd.Process.Kill()
			_ = r.cmd.Wait()
		}
	})
	return r
}

// wait waits for the command and returns its exit code and output.
func (r *resignRun) wait(t *testing.T) (code int, stdout, stderr string) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		_ = r.cmd.Process.Kill()
		err = <-done
		t.Errorf("resign did not exit within 60s")
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		code = exit.ExitCode()
	default:
		t.Fatalf("resign: %v", err)
	}
	return code, r.out.String(), r.errOut.String()
}

// waitNewLeader polls every millisecond until a running sidecar other than
// not has its status file, and returns it.
func (f *fleet) waitNewLeader(not string, timeout time.Duration) *testcluster.Sidecar {
	f.t.Helper()
	s, err := testcluster.WaitForLeader(f.t.Context(), f.all(), not, timeout)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// logIndex returns where msg first appears in the log, or -1.
func logIndex(s *testcluster.Sidecar, msg string) int { return strings.Index(s.Log(), msg) }

// lastLogTime returns the time of the last line of s's log holding msg.
func lastLogTime(s *testcluster.Sidecar, msg string) (time.Time, error) {
	lines := strings.Split(s.Log(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if !strings.Contains(lines[i], msg) {
			continue
		}
		stamp, _, _ := strings.Cut(strings.TrimPrefix(lines[i], "time="), " ")
		return time.Parse(time.RFC3339Nano, stamp)
	}
	return time.Time{}, fmt.Errorf("the log of %s has no %q", s.Opts.Pod, msg)
}

// inode returns the inode number of path, or an error.
func inode(path string) (uint64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("stat %s: no inode", path)
	}
	return st.Ino, nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
