package leasestore

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-logr/logr"
	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/klog/v2"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/testutil"
)

// rbacLeases is the Lease API as a Role grants it: list always, watch only
// once allow is set. Get, Create and Update are not used by Watch.
type rbacLeases struct {
	Leases
	allow          atomic.Bool
	lists, watches atomic.Int64
}

func (f *rbacLeases) List(context.Context, metav1.ListOptions) (*coordinationv1.LeaseList, error) {
	f.lists.Add(1)
	return &coordinationv1.LeaseList{ListMeta: metav1.ListMeta{ResourceVersion: "7"}}, nil
}

func (f *rbacLeases) Watch(context.Context, metav1.ListOptions) (watch.Interface, error) {
	f.watches.Add(1)
	if !f.allow.Load() {
		return nil, apierrors.NewForbidden(leasesGVR.GroupResource(), "",
			errors.New(`User "system:serviceaccount:ns:app" cannot watch resource "leases"`))
	}
	return watch.NewFake(), nil
}

// TestWatchBacksOffWhileWatchIsForbidden: with list allowed and watch
// forbidden, Watch neither loops LIST+WATCH nor logs on every turn. Over a
// minute of simulated time it calls each at most once per retry period
// (after the first, shorter back-off steps), logs the cause once, and
// establishes the watch as soon as it is allowed.
func TestWatchBacksOffWhileWatchIsForbidden(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			retry = 2 * time.Second
			span  = time.Minute
			tick  = 100 * time.Millisecond
		)
		// Back-off sleeps are retry/4, retry/2, then retry: over span at
		// most span/retry turns, plus the first two short ones and the
		// one at the start.
		maxTurns := int64(span/retry) + 3
		minTurns := int64(span/(retry+retry/10)) - 1 // sleeps are at most retry plus 10% jitter

		leases := &rbacLeases{}
		var logs testutil.SyncBuffer
		h := slog.NewTextHandler(&logs, nil)
		clk := clocktesting.NewFakeClock(time.Now())
		s := New(leases, testNamespace, testName, retry, clk, slog.New(h))
		// What the RetryWatcher logs through the context goes to the same sink.
		ctx, cancel := context.WithCancel(klog.NewContext(t.Context(), logr.FromSlogHandler(h)))
		events := make(chan election.Event)
		done := make(chan struct{})
		go func() { defer close(done); s.Watch(ctx, events) }()

		var got []election.Event
		// collect takes what Watch sends until it blocks.
		collect := func(phase string, elapsed time.Duration) {
			t.Helper()
			for {
				synctest.Wait()
				select {
				case ev := <-events:
					got = append(got, ev)
					if l, w := leases.lists.Load(), leases.watches.Load(); l > maxTurns || w > maxTurns {
						t.Fatalf("%s: %d LISTs and %d WATCHes after %s of simulated time, want at most %d each: a hot loop",
							phase, l, w, elapsed, maxTurns)
					}
				default:
					return
				}
			}
		}
		// step collects, then advances the clock, which Watch must wait on.
		step := func(phase string, elapsed time.Duration) {
			t.Helper()
			collect(phase, elapsed)
			if !clk.HasWaiters() {
				t.Fatalf("%s: after %s Watch neither sends an event nor waits on the clock", phase, elapsed)
			}
			clk.Step(tick)
		}
		for elapsed := time.Duration(0); elapsed < span; elapsed += tick {
			step("watch forbidden", elapsed)
		}
		l, w := leases.lists.Load(), leases.watches.Load()
		if l < minTurns || w < minTurns {
			t.Errorf("%d LISTs and %d WATCHes over %s, want at least %d each: Watch must keep retrying", l, w, span, minTurns)
		}
		t.Logf("over %s with watch forbidden: %d LISTs, %d WATCHes", span, l, w)
		if errs := logs.Lines("level=ERROR"); len(errs) != 1 || !strings.Contains(errs[0], "forbidden") {
			t.Errorf("error log lines = %q, want exactly one, naming the forbidden watch", errs)
		}
		var lost int
		for _, ev := range got {
			if ev.Type == election.WatchLost && ev.Err != nil && apierrors.IsForbidden(ev.Err) {
				lost++
			}
		}
		if lost < int(minTurns) {
			t.Errorf("%d WatchLost events carrying the 403, want one per turn (at least %d): the election shows the cause", lost, minTurns)
		}

		// The Role is fixed: the watch is established within one retry.
		leases.allow.Store(true)
		got = got[:0]
		for elapsed := time.Duration(0); ; elapsed += tick {
			collect("watch allowed", elapsed)
			if slices.ContainsFunc(got, func(ev election.Event) bool { return ev.Type == election.WatchEstablished }) {
				break
			}
			if elapsed > retry+retry/10 {
				t.Fatalf("no WatchEstablished within %s of watch being allowed; events %+v", elapsed, got)
			}
			step("watch allowed", elapsed)
		}
		if ok := logs.Lines("lease watch established again"); len(ok) != 1 {
			t.Errorf("recovery log lines = %q, want one", ok)
		}

		cancel()
		for {
			select {
			case <-events:
				continue
			case <-done:
			}
			break
		}
	})
}
