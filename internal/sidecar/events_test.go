package sidecar

import (
	"context"
	"errors"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/outputs/eventrecorder"
)

// startWithEvents runs a sidecar with EVENTS=true, writing its events to the
// fake's events.k8s.io/v1 API.
func startWithEvents(t *testing.T, cfg config.Config, c *cluster) *running {
	t.Helper()
	cfg.Events = true
	s, err := New(cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Pods: c.CoreV1().Pods(ns), Log: quiet,
		Health: newIdleListener(nil), Events: eventrecorder.NewSink(c.EventsV1())})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s.watchStatusDir = false
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{s: s, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	return r
}

func listEvents(t *testing.T, c *cluster) []eventsv1.Event {
	t.Helper()
	l, err := c.EventsV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l.Items
}

// A term and its end, with a stale peer label repaired on the way: the
// events regard the Lease (with its uid) and the repaired pod, and relate to
// the own pod.
func TestEventsOfATerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		labels := func(role string) map[string]string { return map[string]string{"app": "myapp", "role": role} }
		c := newCluster(t,
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-a", Namespace: ns, UID: "uid-a", Labels: labels("follower")}},
			&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "pod-b", Namespace: ns, UID: "uid-b", Labels: labels("leader")}})
		// The API server gives the Lease its uid.
		c.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
			a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).UID = "lease-uid"
			return false, nil, nil
		})
		cfg := testConfig(t)
		cfg.LabelPodRole, cfg.PodUID = true, "uid-a"
		r := startWithEvents(t, cfg, c)
		time.Sleep(time.Second)
		synctest.Wait()
		if h := holder(c.lease(t)); h != "pod-a" {
			t.Fatalf("holder = %q, want pod-a", h)
		}
		if err := r.stop(t); err != nil {
			t.Fatalf("Run: %v", err)
		}

		lease := corev1.ObjectReference{Kind: "Lease", APIVersion: "coordination.k8s.io/v1", Namespace: ns, Name: "lock", UID: "lease-uid"}
		own := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: "pod-a", UID: "uid-a"}
		peer := corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: ns, Name: "pod-b", UID: "uid-b"}
		type ev struct {
			note, reason, typ string
			regarding         corev1.ObjectReference
			related           corev1.ObjectReference
		}
		var got []ev
		for _, e := range listEvents(t, c) {
			if e.Regarding.Name == "pod-a" {
				// The fake gives pods no resourceVersions, so the labeler
				// cannot tell its own write from an older copy of the pod
				// and may put its label "back"; the labeler's own tests,
				// whose fake has them, show it does not on a real server.
				continue
			}
			var related corev1.ObjectReference
			if e.Related != nil {
				related = *e.Related
			}
			got = append(got, ev{e.Note, e.Reason, e.Type, e.Regarding, related})
		}
		want := []ev{
			{"pod-a became leader", "LeaderElection", "Normal", lease, own},
			{"pod-a set the role label of pod pod-b to follower (was leader)", "RoleLabelRepaired", "Warning", peer, own},
			{"pod-a stopped leading", "LeaderElection", "Normal", lease, own},
		}
		byNote := func(a, b ev) int {
			switch {
			case a.note < b.note:
				return -1
			case a.note > b.note:
				return 1
			}
			return 0
		}
		slices.SortFunc(got, byNote)
		slices.SortFunc(want, byNote)
		if !slices.Equal(got, want) {
			t.Errorf("events:\n%+v\nwant\n%+v", got, want)
		}
	})
}

// TestEventsOff: EVENTS=false records nothing, also with a sink.
func TestEventsOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		r := run(t, testConfig(t), Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet,
			Health: newIdleListener(nil), Events: eventrecorder.NewSink(c.EventsV1())})
		time.Sleep(time.Second)
		synctest.Wait()
		if h := holder(c.lease(t)); h != "pod-a" {
			t.Fatalf("holder = %q, want pod-a", h)
		}
		r.cancel()
		if err := <-r.done; err != nil {
			t.Fatal(err)
		}
		if evs := listEvents(t, c); len(evs) != 0 {
			t.Errorf("%d events with EVENTS=false", len(evs))
		}
	})
}

// hangingSink never answers, and ignores its context, as a write on a dead
// connection might, until release is closed.
type hangingSink struct{ release chan struct{} }

func (h hangingSink) hang() (*eventsv1.Event, error) {
	<-h.release
	return nil, errors.New("connection reset")
}
func (h hangingSink) Create(context.Context, *eventsv1.Event) (*eventsv1.Event, error) {
	return h.hang()
}
func (h hangingSink) Update(context.Context, *eventsv1.Event) (*eventsv1.Event, error) {
	return h.hang()
}
func (h hangingSink) Patch(context.Context, *eventsv1.Event, []byte) (*eventsv1.Event, error) {
	return h.hang()
}

// TestHangingEventsAPIDoesNotDelayTheElection: the events API never answers.
// The leader still renews on time, steps down and releases the Lease at
// once; only the exit waits, for the flush's bound.
func TestHangingEventsAPIDoesNotDelayTheElection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t)
		sink := hangingSink{release: make(chan struct{})}
		cfg := testConfig(t)
		cfg.Events = true
		r := run(t, cfg, Deps{Leases: c.CoordinationV1().Leases(ns), Log: quiet, Health: newIdleListener(nil), Events: sink})
		time.Sleep(time.Second)
		synctest.Wait()
		if h := holder(c.lease(t)); h != "pod-a" {
			t.Fatalf("holder = %q, want pod-a", h)
		}
		// Renewals go on every RETRY_PERIOD: the loop is not stuck in the
		// events output's Lead.
		first := c.lease(t).Spec.RenewTime.Time
		time.Sleep(10 * cfg.RetryPeriod)
		synctest.Wait()
		if renewed := c.lease(t).Spec.RenewTime.Time; renewed.Sub(first) != 10*cfg.RetryPeriod {
			t.Errorf("renewTime moved %s in %s, want every RETRY_PERIOD", renewed.Sub(first), 10*cfg.RetryPeriod)
		}

		began := time.Now()
		r.cancel()
		synctest.Wait()
		// Stepped down and released in no time on the bubble's clock.
		if h := holder(c.lease(t)); h != "" || time.Since(began) != 0 {
			t.Errorf("holder = %q %s after the signal, want the Lease released at once", h, time.Since(began))
		}
		if err := <-r.done; err != nil {
			t.Errorf("Run: %v", err)
		}
		if waited := time.Since(began); waited != eventrecorder.DefaultFlushTimeout {
			t.Errorf("Run returned %s after the signal, want the flush's bound %s", waited, eventrecorder.DefaultFlushTimeout)
		}
		close(sink.release)
	})
}
