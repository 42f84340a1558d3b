package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/leader-elector/leader-elector/internal/config"
)

const ns = "apps"

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// cluster is client-go's fake clientset with what the sidecar relies on and
// the fake lacks: resourceVersions on Leases, and conflicts for stale ones.
type cluster struct {
	*fake.Clientset

	mu     sync.Mutex
	rv     int
	events []string // what happened, in order, for tests of ordering
}

func newCluster(t *testing.T, objs ...runtime.Object) *cluster {
	c := &cluster{Clientset: fake.NewClientset(objs...)}
	tracker := c.Tracker()
	leases := coordinationv1.SchemeGroupVersion.WithResource("leases")
	c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		c.mu.Lock()
		defer c.mu.Unlock()
		c.rv++
		obj.ResourceVersion = strconv.Itoa(c.rv)
		if err := tracker.Create(leases, obj, obj.Namespace); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	c.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
		obj := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
		c.mu.Lock()
		defer c.mu.Unlock()
		cur, err := tracker.Get(leases, obj.Namespace, obj.Name)
		if err != nil {
			return true, nil, err
		}
		if m, _ := meta.Accessor(cur); m.GetResourceVersion() != obj.ResourceVersion {
			return true, nil, apierrors.NewConflict(leases.GroupResource(), obj.Name, errors.New("stale resourceVersion"))
		}
		c.rv++
		obj.ResourceVersion = strconv.Itoa(c.rv)
		if h := obj.Spec.HolderIdentity; h != nil && *h == "" {
			c.record("release")
		}
		if err := tracker.Update(leases, obj, obj.Namespace); err != nil {
			return true, nil, err
		}
		return true, obj, nil
	})
	return c
}

func (c *cluster) record(event string) {
	c.events = append(c.events, event)
}

func (c *cluster) lease(t *testing.T) *coordinationv1.Lease {
	t.Helper()
	l, err := c.CoordinationV1().Leases(ns).Get(context.Background(), "lock", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get lease: %v", err)
	}
	return l
}

func holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// idleListener accepts nothing until closed, so that the health server runs
// in the bubble without a network; err, if set, is what Accept returns.
type idleListener struct {
	err    error
	once   sync.Once
	closed chan struct{}
}

func newIdleListener(err error) *idleListener {
	return &idleListener{err: err, closed: make(chan struct{})}
}

func (l *idleListener) Accept() (net.Conn, error) {
	if l.err != nil {
		return nil, l.err
	}
	<-l.closed
	return nil, net.ErrClosed
}
func (l *idleListener) Close() error   { l.once.Do(func() { close(l.closed) }); return nil }
func (l *idleListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }

func testConfig(t *testing.T) config.Config {
	return config.Config{
		LeaseName: "lock", Namespace: ns, Identity: "pod-a", PodName: "pod-a",
		StatusFile:    filepath.Join(t.TempDir(), "leader_status"),
		RoleLabelKey:  "role",
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
	}
}

type running struct {
	s      *Sidecar
	cancel context.CancelFunc
	done   chan error
}

// run builds a sidecar with New, as main does, and runs it until stop; the
// one way the in-process tests start one. It runs without the status
// directory's fsnotify watch (its reader blocks in the kernel, where synctest
// cannot see it; e2e tests cover it). d.Log is quiet and d.Version "test"
// unless set.
func run(t *testing.T, cfg config.Config, d Deps) *running {
	t.Helper()
	if d.Log == nil {
		d.Log = quiet
	}
	if d.Version == "" {
		d.Version = "test"
	}
	s, err := New(cfg, d)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.watchStatusDir = false
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	return r
}

// start runs a sidecar of c's Leases and Pods, its health on ln.
func start(t *testing.T, cfg config.Config, c *cluster, ln net.Listener) *running {
	t.Helper()
	return run(t, cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Pods: c.CoreV1().Pods(ns), Health: ln})
}

func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	return <-r.done
}

func TestUnwritableStatusFileGivesTheLeaseBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		cfg := testConfig(t)
		cfg.StatusFile = filepath.Join(t.TempDir(), "missing", "leader_status") // its directory does not exist
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()

		l := c.lease(t)
		if h := holder(l); h != "" {
			t.Errorf("holder = %q after a failed status write, want the Lease given back", h)
		}
		if d := l.Spec.LeaseDurationSeconds; d == nil || *d != 1 {
			t.Errorf("leaseDurationSeconds = %v, want 1, the mark of a release", d)
		}
		rep := r.s.report()
		if rep.IsLeader || !strings.Contains(rep.StatusError, "leader_status") {
			t.Errorf("report: is_leader=%v status_file_error=%q, want not leading and the error", rep.IsLeader, rep.StatusError)
		}
		if err := r.s.ready(); err == nil {
			t.Error("ready() passed with an unwritable status directory")
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestStepDownOrder: stepping down removes the file, then labels the pod
// follower, then releases the Lease.
func TestStepDownOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-a", Namespace: ns, Labels: map[string]string{"app": "myapp"}}}
		c := newCluster(t, pod)
		cfg := testConfig(t)
		cfg.LabelPodRole = true
		c.PrependReactor("patch", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
			p := a.(k8stesting.PatchAction)
			if p.GetName() == "pod-a" && strings.Contains(string(p.GetPatch()), `"follower"`) {
				c.mu.Lock()
				_, err := os.Stat(cfg.StatusFile)
				c.record("label follower, file exists=" + strconv.FormatBool(err == nil))
				c.mu.Unlock()
			}
			return false, nil, nil
		})
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()
		if got, err := os.ReadFile(cfg.StatusFile); err != nil || string(got) != "pod-a\n" {
			t.Fatalf("status file = %q, %v; want the identity while leading", got, err)
		}
		p, err := c.CoreV1().Pods(ns).Get(context.Background(), "pod-a", metav1.GetOptions{})
		if err != nil || p.Labels["role"] != "leader" {
			t.Fatalf("pod labels = %v (%v), want role=leader", p.Labels, err)
		}
		c.mu.Lock()
		c.events = nil
		c.mu.Unlock()

		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
		c.mu.Lock()
		got := strings.Join(c.events, "; ")
		c.mu.Unlock()
		if want := "label follower, file exists=false; release"; got != want {
			t.Errorf("step-down order: %s; want %s", got, want)
		}
	})
}

// TestProbes: readiness means the sidecar can do its job locally (it has read
// the Lease once, the status directory is writable) and does not follow the
// API server afterwards; liveness means the election loop runs.
func TestProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		cfg := testConfig(t)
		var apiDown bool
		var mu sync.Mutex
		c.PrependReactor("*", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
			mu.Lock()
			defer mu.Unlock()
			if apiDown {
				return true, nil, apierrors.NewTooManyRequests("slow down", 1)
			}
			return false, nil, nil
		})
		mu.Lock()
		apiDown = true // from the start: the Lease cannot be read
		mu.Unlock()
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(5 * time.Second)
		synctest.Wait()
		h := r.s.handler()
		probe := func(path string) (int, string) {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			return rec.Code, rec.Body.String()
		}
		if code, body := probe("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "not read yet") {
			t.Errorf("/readyz before the first read = %d %q, want 503 naming the unread Lease", code, body)
		}
		if code, _ := probe("/livez"); code != http.StatusOK {
			t.Errorf("/livez with a throttling API = %d, want 200: a restart would not help", code)
		}

		mu.Lock()
		apiDown = false
		mu.Unlock()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if code, body := probe("/readyz"); code != http.StatusOK {
			t.Errorf("/readyz after the first read = %d %q, want 200", code, body)
		}

		mu.Lock()
		apiDown = true // an outage later on must not take the pod out of its Services
		mu.Unlock()
		time.Sleep(3 * cfg.LeaseDuration)
		synctest.Wait()
		if code, body := probe("/readyz"); code != http.StatusOK {
			t.Errorf("/readyz during an API outage = %d %q, want 200", code, body)
		}
		if code, body := probe("/livez"); code != http.StatusOK {
			t.Errorf("/livez during an API outage = %d %q, want 200", code, body)
		}
		code, body := probe("/status")
		var rep Report
		if err := json.Unmarshal([]byte(body), &rep); code != http.StatusOK || err != nil {
			t.Fatalf("/status = %d %q (%v)", code, body, err)
		}
		if !strings.Contains(rep.LastError, "slow down") {
			t.Errorf("/status last_error = %q, want the API's error", rep.LastError)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func TestLiveFailsWhenTheLoopDoesNotRun(t *testing.T) {
	c := newCluster(t)
	s, err := New(testConfig(t), Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.live(); err == nil || !strings.Contains(err.Error(), "election loop has not run") {
		t.Errorf("live() of a loop that never ran = %v, want it to fail", err)
	}
}

// TestFailingPartEndsTheElection: a part that stops while the sidecar runs
// (here the health server) steps the leader down, releases the Lease and
// makes Run return the error, instead of going unnoticed until shutdown.
func TestFailingPartEndsTheElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		cfg := testConfig(t)
		ln := newIdleListener(nil)
		r := start(t, cfg, c, ln)
		time.Sleep(time.Second)
		synctest.Wait()
		if h := holder(c.lease(t)); h != "pod-a" {
			t.Fatalf("holder = %q, want pod-a", h)
		}
		ln.Close() // Accept fails, as on a closed or broken listener
		var err error
		select {
		case err = <-r.done:
		case <-time.After(time.Minute):
			t.Fatal("Run did not return after the health server failed")
		}
		if err == nil || !strings.Contains(err.Error(), "health server") {
			t.Errorf("Run = %v, want the health server's failure", err)
		}
		if h := holder(c.lease(t)); h != "" {
			t.Errorf("holder = %q after the failure, want the Lease released", h)
		}
		if _, statErr := os.Stat(cfg.StatusFile); !errors.Is(statErr, os.ErrNotExist) {
			t.Errorf("status file still exists after stepping down (%v)", statErr)
		}
	})
}

// TestStartupDoneRunsOnceAfterTheFirstChange: the memory trim in main must
// come after start-up, and only once.
func TestStartupDoneRunsOnceAfterTheFirstChange(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		var calls atomic.Int32
		s, err := New(testConfig(t), Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet, Health: newIdleListener(nil),
			StartupDone: func() { calls.Add(1) }})
		if err != nil {
			t.Fatal(err)
		}
		s.watchStatusDir = false
		if n := calls.Load(); n != 0 {
			t.Fatalf("StartupDone ran %d times before Run", n)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(time.Minute) // leads, renews many times
		synctest.Wait()
		if !s.elector.State().IsLeader {
			t.Fatal("did not lead")
		}
		if n := calls.Load(); n != 1 {
			t.Errorf("StartupDone ran %d times, want once", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestReadinessChecksTheDirectoryOncePerSecond: /readyz answers anyone who
// reaches the health port, so the status directory's check (a file
// created, written, synced and removed) runs at most once a second; in
// between the last result stands.
func TestReadinessChecksTheDirectoryOncePerSecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		cfg := testConfig(t)
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()
		h := r.s.handler()
		readyz := func() int {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			return rec.Code
		}
		if code := readyz(); code != http.StatusOK {
			t.Fatalf("/readyz = %d, want 200", code)
		}
		// The directory goes: a check would fail at once.
		if err := os.RemoveAll(filepath.Dir(cfg.StatusFile)); err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			if code := readyz(); code != http.StatusOK {
				t.Fatalf("request %d within the second: /readyz = %d, want the cached 200 (a check per request)", i, code)
			}
		}
		time.Sleep(writableEvery)
		if code := readyz(); code != http.StatusServiceUnavailable {
			t.Errorf("/readyz a second later = %d, want 503 from a new check", code)
		}
		r.cancel()
		<-r.done
	})
}
