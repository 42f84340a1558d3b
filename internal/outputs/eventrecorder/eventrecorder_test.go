package eventrecorder

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leader-elector/leader-elector/election"
)

// fakeSink keeps what is written; while block is non-nil, every write waits
// until it is closed (ignoring its context, as a hanging connection might),
// then fails.
type fakeSink struct {
	mu      sync.Mutex
	created []*eventsv1.Event
	patched []*eventsv1.Event
	calls   int
	block   chan struct{}
	delay   time.Duration
}

func (s *fakeSink) write(e *eventsv1.Event, into *[]*eventsv1.Event) (*eventsv1.Event, error) {
	s.mu.Lock()
	s.calls++
	block, delay := s.block, s.delay
	s.mu.Unlock()
	if block != nil {
		<-block
		return nil, errors.New("connection reset")
	}
	time.Sleep(delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	*into = append(*into, e.DeepCopy())
	return e, nil
}

func (s *fakeSink) Create(_ context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write(e, &s.created)
}

func (s *fakeSink) Update(_ context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	return s.write(e, &s.created)
}

func (s *fakeSink) Patch(_ context.Context, e *eventsv1.Event, _ []byte) (*eventsv1.Event, error) {
	return s.write(e, &s.patched)
}

func (s *fakeSink) events() []*eventsv1.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*eventsv1.Event(nil), s.created...)
}

func (s *fakeSink) writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func testConfig(sink Sink) Config {
	return Config{Sink: sink, Namespace: "ns", Lease: "myapp-lock", LeaseUID: func() types.UID { return "lease-uid" },
		Identity: "pod-a", Pod: "pod-a", PodUID: "pod-a-uid", Log: quiet}
}

// start runs r until the returned func is called, which waits for Run.
func start(t *testing.T, r *Recorder) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

var state = election.State{Identity: "pod-a"}

func TestRecordsLeadershipAndRepairs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{}
		r, err := New(testConfig(sink))
		if err != nil {
			t.Fatal(err)
		}
		stop := start(t, r)
		lease := corev1.ObjectReference{Kind: "Lease", APIVersion: "coordination.k8s.io/v1", Namespace: "ns", Name: "myapp-lock", UID: "lease-uid"}
		own := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "ns", Name: "pod-a", UID: "pod-a-uid"}
		peer := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: "ns", Name: "pod-b", UID: "pod-b-uid"}
		type want struct {
			regarding corev1.ObjectReference
			related   *corev1.ObjectReference
			typ       string
			reason    string
			action    string
			note      string
		}
		for _, tc := range []struct {
			name string
			do   func()
			want want
		}{
			{"became leader", func() { _ = r.Lead(t.Context(), state) },
				want{lease, &own, "Normal", "LeaderElection", "BecameLeader", "pod-a became leader"}},
			{"a peer's stale label", func() { r.RoleLabelRepaired("pod-b", "pod-b-uid", "leader", "follower") },
				want{peer, &own, "Warning", "RoleLabelRepaired", "RepairedRoleLabel", "pod-a set the role label of pod pod-b to follower (was leader)"}},
			{"the own label removed", func() { r.RoleLabelRepaired("pod-a", "pod-a-uid", "", "leader") },
				want{own, nil, "Warning", "RoleLabelRepaired", "RepairedRoleLabel", "pod-a set the role label of pod pod-a to leader (was no label)"}},
			{"stopped leading", func() { _ = r.Follow(t.Context(), state) },
				want{lease, &own, "Normal", "LeaderElection", "StoppedLeading", "pod-a stopped leading"}},
		} {
			before := len(sink.events())
			tc.do()
			synctest.Wait()
			got := sink.events()
			if len(got) != before+1 {
				t.Fatalf("%s: %d events written, want 1", tc.name, len(got)-before)
			}
			e := got[before]
			g := want{e.Regarding, e.Related, e.Type, e.Reason, e.Action, e.Note}
			if g.regarding != tc.want.regarding || (g.related == nil) != (tc.want.related == nil) ||
				(g.related != nil && *g.related != *tc.want.related) || g.typ != tc.want.typ ||
				g.reason != tc.want.reason || g.action != tc.want.action || g.note != tc.want.note {
				t.Errorf("%s: got %+v (related %+v),\nwant %+v (related %+v)", tc.name, g, g.related, tc.want, tc.want.related)
			}
			if e.Namespace != "ns" || e.ReportingController != ReportingController || e.EventTime.IsZero() {
				t.Errorf("%s: namespace %q, reportingController %q, eventTime %v", tc.name, e.Namespace, e.ReportingController, e.EventTime)
			}
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	})
}

// A leadership that was given back before it was announced (an earlier
// output failed) is no "stopped leading"; nor is a second Follow.
func TestStoppedLeadingOnlyAfterBecameLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{}
		r, _ := New(testConfig(sink))
		stop := start(t, r)
		_ = r.Follow(t.Context(), state)
		_ = r.Lead(t.Context(), state)
		_ = r.Follow(t.Context(), state)
		_ = r.Follow(t.Context(), state)
		synctest.Wait()
		var notes []string
		for _, e := range sink.events() {
			notes = append(notes, e.Note)
		}
		// The broadcaster writes each event from a goroutine of its own, in
		// no particular order; eventTime orders them.
		slices.Sort(notes)
		if len(notes) != 2 || notes[0] != "pod-a became leader" || notes[1] != "pod-a stopped leading" {
			t.Errorf("events %q, want one became leader and one stopped leading", notes)
		}
		_ = stop()
	})
}

// Events recorded before Run starts are written once it does.
func TestEventsBeforeRunAreKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{}
		r, _ := New(testConfig(sink))
		_ = r.Lead(t.Context(), state)
		synctest.Wait()
		if n := len(sink.events()); n != 0 {
			t.Fatalf("%d events written before Run", n)
		}
		stop := start(t, r)
		synctest.Wait()
		if got := sink.events(); len(got) != 1 || got[0].Note != "pod-a became leader" {
			t.Errorf("after Run started: %d events, want pod-a became leader", len(got))
		}
		_ = stop()
	})
}

// The step-down's event is recorded right before the sidecar stops: Run
// waits for it to be written, here 300ms, before it returns.
func TestRunWaitsForEventsRecordedLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{delay: 300 * time.Millisecond}
		r, _ := New(testConfig(sink))
		stop := start(t, r)
		_ = r.Lead(t.Context(), state)
		_ = r.Follow(t.Context(), state)
		began := time.Now()
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		if got := sink.events(); len(got) != 2 {
			t.Errorf("%d events written when Run returned, want 2", len(got))
		}
		if waited := time.Since(began); waited != sink.delay {
			t.Errorf("Run returned after %s, want after the write's %s", waited, sink.delay)
		}
	})
}

// A sink that hangs forever, ignoring its context, as a dead connection
// might: recording returns at once every time, also far beyond the
// broadcaster's queue, and Run returns after FlushTimeout.
//
// It runs on the real clock, not in a synctest bubble: client-go's
// broadcaster patches event series while holding its mutex, so with the sink
// hung, its other goroutines wait on that mutex, which a bubble does not
// count as blocked, and synctest.Wait would never return. The bounds below
// only catch a hang; they are far above what the calls take.
func TestHangingSinkNeverBlocks(t *testing.T) {
	release := make(chan struct{})
	sink := &fakeSink{block: release}
	cfg := testConfig(sink)
	cfg.FlushTimeout = 200 * time.Millisecond
	r, _ := New(cfg)
	stop := start(t, r)
	t.Cleanup(func() { close(release) }) // lets the hung writes end
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		for range 1500 {
			_ = r.Lead(context.Background(), state)
			_ = r.Follow(context.Background(), state)
			r.RoleLabelRepaired("pod-b", "", "leader", "follower")
		}
	}()
	select {
	case <-recorded:
	case <-time.After(30 * time.Second):
		t.Fatal("4500 recordings did not return within 30s: recording blocks on the hung sink")
	}
	if err := wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, 10*time.Second, true,
		func(context.Context) (bool, error) { return sink.writes() > 0, nil }); err != nil {
		t.Fatal("no write reached the sink")
	}
	began := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(began); waited < cfg.FlushTimeout || waited > cfg.FlushTimeout+10*time.Second {
		t.Errorf("Run returned %s after its context ended, want FlushTimeout %s (plus scheduling)", waited, cfg.FlushTimeout)
	}
}

// After Run returned, recording is a no-op.
func TestRecordAfterRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sink := &fakeSink{}
		r, _ := New(testConfig(sink))
		stop := start(t, r)
		_ = stop()
		_ = r.Lead(t.Context(), state)
		r.RoleLabelRepaired("pod-b", "", "leader", "follower")
		synctest.Wait()
		if n := sink.writes(); n != 0 {
			t.Errorf("%d writes after Run returned", n)
		}
	})
}

func TestNewRequires(t *testing.T) {
	for _, c := range []Config{
		{Namespace: "ns", Lease: "l"},
		{Sink: &fakeSink{}, Lease: "l"},
		{Sink: &fakeSink{}, Namespace: "ns"},
	} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}
