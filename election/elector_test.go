package election

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
)

const (
	ld = 15 * time.Second
	rd = 10 * time.Second
	rp = 2 * time.Second
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// one is a single candidate on a fake clock, for focused, deterministic
// tests. Its test must run inside synctest.Test, so that synctest.Wait tells
// when every goroutine is idle.
type one struct {
	t       *testing.T
	clk     *clocktesting.FakeClock
	store   *memStore
	lock    *memLock
	e       *Elector
	cancel  context.CancelFunc
	done    chan error
	onStart func() error // nil: succeed
	onStop  func() error // nil: succeed; guarded by mu

	mu      sync.Mutex
	started int
	stopped int
}

func newOne(t *testing.T, store *memStore) *one { return newOneWith(t, store, nil) }

func newOneWith(t *testing.T, store *memStore, onStart func() error) *one {
	return newOneLock(t, store, onStart, func(l *memLock) Lock { return l })
}

func (o *one) stop() {
	if o.cancel == nil {
		return
	}
	o.cancel()
	o.cancel = nil
	// A step-down outlives the cancel, bounded on the fake clock: let time
	// pass while it waits for hung requests, up to the bound on stepping down.
	for passed := time.Duration(0); ; passed += rp {
		synctest.Wait()
		select {
		case err := <-o.done:
			if err != nil {
				o.t.Errorf("Run: %v", err)
			}
			return
		default:
		}
		if passed > rp+rd {
			o.t.Fatalf("Run did not return %s after its context ended, beyond the step-down bound", passed)
		}
		o.clk.Step(rp)
	}
}

// step advances the fake clock and waits until everything reacted.
func (o *one) step(d time.Duration) {
	o.clk.Step(d)
	synctest.Wait()
}

func (o *one) counts() (started, stopped int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.started, o.stopped
}

func record(holder string, renew time.Time, transitions int) Record {
	return Record{HolderIdentity: holder, LeaseDurationSeconds: int(ld / time.Second),
		AcquireTime: metav1.NewTime(renew), RenewTime: metav1.NewTime(renew), LeaderTransitions: transitions}
}

func TestCreatesAMissingLeaseAndLeads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		if !o.e.State().IsLeader {
			t.Fatal("not leading after creating the Lease")
		}
		l, _ := store.current()
		if l.Record.HolderIdentity != "me" || l.Record.LeaseDurationSeconds != 15 || l.Record.LeaderTransitions != 0 {
			t.Errorf("record = %+v", l.Record)
		}
	})
}

func TestTakesAReleasedLeaseAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		store.mu.Lock()
		store.commit(Record{LeaseDurationSeconds: 1, LeaderTransitions: 4})
		store.mu.Unlock()
		o := newOne(t, store)
		if !o.e.State().IsLeader {
			t.Fatal("did not take a released Lease without waiting")
		}
		if l, _ := store.current(); l.Record.LeaderTransitions != 5 {
			t.Errorf("transitions = %d, want 5", l.Record.LeaderTransitions)
		}
	})
}

// TestExpiryCountsFromObservation: a holder's renewTime far in the past (a
// skewed clock on its node) does not let a follower take over early.
func TestExpiryCountsFromObservation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		store.mu.Lock()
		store.commit(record("other", time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 2))
		store.mu.Unlock()
		o := newOne(t, store)
		o.step(ld - time.Millisecond)
		if o.e.State().IsLeader {
			t.Fatal("took the Lease before LeaseDuration passed since it was first observed")
		}
		if st := o.e.State(); st.Leader != "other" || st.Transitions != 2 {
			t.Errorf("state = %+v, want leader other, transitions 2", st)
		}
		o.step(time.Millisecond)
		if !o.e.State().IsLeader {
			t.Fatal("did not take the Lease once LeaseDuration passed")
		}
		if l, _ := store.current(); l.Record.LeaderTransitions != 3 || l.Record.HolderIdentity != "me" {
			t.Errorf("record = %+v, want holder me, transitions 3", l.Record)
		}
	})
}

// TestHolderRenewalRestartsExpiry: every change of the record restarts the
// follower's count.
func TestHolderRenewalRestartsExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		renew := func(at time.Time) {
			store.mu.Lock()
			store.commit(record("other", at, 0))
			store.mu.Unlock()
			synctest.Wait()
		}
		renew(time.Unix(0, 0))
		o := newOne(t, store)
		for i := range 20 { // a live holder for 20 x 10s
			o.step(10 * time.Second)
			renew(time.Unix(int64(i+1), 0))
			st := o.e.State()
			if st.IsLeader {
				t.Fatalf("took the Lease from a holder that renews")
			}
			// The holder's term, as this follower knows it, runs from the
			// renew it just saw.
			if want := o.clk.Now().Add(ld); !st.HeldUntil.Equal(want) {
				t.Fatalf("after renew %d: HeldUntil = %v, want %v", i+1, st.HeldUntil, want)
			}
		}
	})
}

// TestStepsDownAtRenewDeadlineEvenIfRequestsHang: measured from the sending
// of the last successful renew, not from an answer that never comes.
func TestStepsDownAtRenewDeadlineEvenIfRequestsHang(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		if !o.e.State().IsLeader {
			t.Fatal("not leading")
		}
		o.step(rp) // one renew succeeds at t0+rp
		if l, _ := store.current(); !l.Record.RenewTime.Time.Equal(o.clk.Now()) {
			t.Fatalf("renewTime = %s, want %s", l.Record.RenewTime, o.clk.Now())
		}
		store.setFaults(faults{Hang: 1})
		o.step(rd - time.Millisecond) // renews hang from now on
		if !o.e.State().IsLeader {
			t.Fatal("stepped down before RenewDeadline after the last successful renew")
		}
		o.step(time.Millisecond)
		if o.e.State().IsLeader {
			t.Fatal("still leading at RenewDeadline after the last successful renew was sent")
		}
		if _, stopped := o.counts(); stopped != 1 {
			t.Errorf("OnStoppedLeading ran %d times, want 1", stopped)
		}
	})
}

func TestStepsDownAtOnceWhenAnotherHolderAppears(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		store.mu.Lock()
		store.commit(record("intruder", o.clk.Now(), 9))
		store.mu.Unlock()
		synctest.Wait()
		if o.e.State().IsLeader {
			t.Fatal("still leading after the Lease named another holder")
		}
		if l, _ := store.current(); l.Record.HolderIdentity != "intruder" {
			t.Errorf("holder = %q: a candidate that lost the Lease must not release it", l.Record.HolderIdentity)
		}
	})
}

func TestShutdownReleasesLikeClientGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		before, _ := store.current()
		o.stop()
		l, _ := store.current()
		if l.Record.HolderIdentity != "" || l.Record.LeaseDurationSeconds != 1 || l.Record.LeaderTransitions != before.Record.LeaderTransitions {
			t.Errorf("released record = %+v, want empty holder, 1s, transitions kept", l.Record)
		}
		if _, stopped := o.counts(); stopped != 1 {
			t.Errorf("OnStoppedLeading ran %d times, want 1 (before the release)", stopped)
		}
	})
}

func TestResignReleasesAndBacksOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		store.mu.Lock()
		store.commit(Record{LeaseDurationSeconds: 1}) // released
		store.mu.Unlock()
		failing := errors.New("status file unwritable")
		o2 := newOneWith(t, store, func() error { return failing })
		if o2.e.State().IsLeader {
			t.Fatal("leading although OnStartedLeading failed")
		}
		if l, _ := store.current(); l.Record.HolderIdentity != "" {
			t.Fatalf("holder = %q, want the Lease given back", l.Record.HolderIdentity)
		}
		if !strings.Contains(o2.e.State().LastError, failing.Error()) {
			t.Errorf("LastError = %q", o2.e.State().LastError)
		}
		backoffs := []time.Duration{rp, 2 * rp, 4 * rp}
		for i, b := range backoffs {
			o2.step(b - time.Millisecond)
			if s, _ := o2.counts(); s != i+1 {
				t.Fatalf("campaign %d came before its back-off of %s (started %d)", i+2, b, s)
			}
			o2.step(time.Millisecond)
			if s, _ := o2.counts(); s != i+2 {
				t.Fatalf("no campaign %d after a back-off of %s (started %d)", i+2, b, s)
			}
		}
	})
}

// newOneLock starts one candidate whose lock is wrap of its memLock.
func newOneLock(t *testing.T, store *memStore, onStart func() error, wrap func(*memLock) Lock) *one {
	return newOneConfig(t, store, onStart, wrap, nil)
}

// newOneConfig starts one candidate whose lock is wrap of its memLock, with
// its config changed by mod (nil: none) before New.
func newOneConfig(t *testing.T, store *memStore, onStart func() error, wrap func(*memLock) Lock, mod func(*Config)) *one {
	o := &one{t: t, clk: clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), store: store, onStart: onStart}
	o.lock = newMemLock(store, o.clk)
	cfg := Config{
		Lock: wrap(o.lock), Identity: "me", LeaseDuration: ld, RenewDeadline: rd, RetryPeriod: rp, Clock: o.clk, Log: quiet,
		Callbacks: Callbacks{
			OnStartedLeading: func(context.Context, State) error {
				o.mu.Lock()
				o.started++
				o.mu.Unlock()
				if o.onStart == nil {
					return nil
				}
				return o.onStart()
			},
			OnStoppedLeading: func(context.Context, State) error {
				o.mu.Lock()
				o.stopped++
				f := o.onStop
				o.mu.Unlock()
				if f == nil {
					return nil
				}
				return f()
			},
		},
	}
	if mod != nil {
		mod(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	o.e = e
	ctx, cancel := context.WithCancel(context.Background())
	o.cancel, o.done = cancel, make(chan error, 1)
	go func() { o.done <- e.Run(ctx) }()
	t.Cleanup(o.stop)
	synctest.Wait()
	return o
}

// TestFollowerSendsNoPeriodicRequests: a follower's steady state is the
// watch alone, while the leader renews every RetryPeriod (and another
// follower is the standby).
func TestFollowerSendsNoPeriodicRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		peer := Notes{Standby: "peer"}
		store.mu.Lock()
		store.commitNotes(record("other", time.Unix(0, 0), 0), peer)
		store.mu.Unlock()
		o := newOne(t, store)
		initial := o.lock.callCount()
		for i := range 300 { // 10 minutes of a live leader
			o.step(rp)
			store.mu.Lock()
			store.commitNotes(record("other", time.Unix(int64(i), 0), 0), peer)
			store.mu.Unlock()
			synctest.Wait()
		}
		if n := o.lock.callCount() - initial; n != 0 {
			t.Errorf("follower made %d requests in 10 minutes, want 0", n)
		}
	})
}

// TestFollowerPollsWhileTheWatchIsDown and stops when it is back.
func TestFollowerPollsWhileTheWatchIsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		peer := Notes{Standby: "peer"}
		store.mu.Lock()
		store.commitNotes(record("other", time.Unix(0, 0), 0), peer)
		store.mu.Unlock()
		store.setFaults(faults{WatchDrop: 1, WatchOutage: time.Hour})
		o := newOne(t, store)
		store.mu.Lock()
		store.commitNotes(record("other", time.Unix(1, 0), 0), peer) // breaks the watch
		store.mu.Unlock()
		synctest.Wait()
		before := o.lock.callCount()
		for i := range 5 {
			o.step(rp)
			store.mu.Lock()
			store.commitNotes(record("other", time.Unix(int64(i+2), 0), 0), peer)
			store.mu.Unlock()
			synctest.Wait()
		}
		if n := o.lock.callCount() - before; n != 5 {
			t.Errorf("follower polled %d times in 5 RetryPeriods without a watch, want 5", n)
		}
		if o.e.State().IsLeader {
			t.Error("took the Lease from a holder that renews, seen by polling")
		}
	})
}

func TestConfigValidation(t *testing.T) {
	lock := newMemLock(newMemStore(1), clocktesting.NewFakeClock(time.Now()))
	good := Config{Lock: lock, Identity: "a", LeaseDuration: ld, RenewDeadline: rd, RetryPeriod: rp}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"valid", func(*Config) {}, ""},
		{"no lock", func(c *Config) { c.Lock = nil }, "Lock is required"},
		{"no identity", func(c *Config) { c.Identity = "" }, "Identity is required"},
		{"zero retry", func(c *Config) { c.RetryPeriod = 0 }, "RetryPeriod 0s must be greater than zero"},
		{"renew not above 1.2 x retry", func(c *Config) { c.RenewDeadline = 2400 * time.Millisecond }, "RenewDeadline 2.4s must be greater than 1.2 x RetryPeriod (2s)"},
		{"lease not above renew", func(c *Config) { c.LeaseDuration = rd }, "LeaseDuration 10s must be greater than RenewDeadline (10s)"},
		{"fractional lease", func(c *Config) { c.LeaseDuration = 15500 * time.Millisecond }, "LeaseDuration 15.5s must be whole seconds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good
			tc.mod(&c)
			_, err := New(c)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("New: %v, want no error", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("New: %v, want %q", err, tc.want)
			}
		})
	}
}

func TestNewer(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{
		{"10", "9", true}, {"9", "10", false}, {"9", "9", false}, {"x", "", true}, {"b", "a", true}, {"a", "a", false},
		// Beyond uint64: ordered by apimachinery's resourceversion, which
		// has no limit on length.
		{"100000000000000000000", "99999999999999999999", true},
		{"99999999999999999999", "100000000000000000000", false},
		{"100000000000000000000", "100000000000000000000", false},
		// Not well formed (a leading zero): opaque, newer when different.
		{"09", "10", true},
	} {
		if got := newer(tc.a, tc.b); got != tc.want {
			t.Errorf("newer(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestStaleDeletedEventDoesNotDethrone: the watch's first read may find no
// Lease and report it after this candidate created the Lease; the leader
// must check, not step down.
func TestStaleDeletedEventDoesNotDethrone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		lock := &staleDeleteLock{release: make(chan struct{})}
		o := newOneLock(t, store, nil, func(l *memLock) Lock { lock.memLock = l; return lock })
		e := o.e
		if !e.State().IsLeader {
			t.Fatal("did not create the Lease and lead")
		}
		close(lock.release) // now the stale "no Lease" report arrives
		synctest.Wait()
		if !e.State().IsLeader {
			t.Fatal("stepped down on a stale report that the Lease was missing")
		}
		if l, _ := store.current(); l.Record.HolderIdentity != "me" || l.Record.LeaderTransitions != 0 {
			t.Errorf("record = %+v, want held by me with no transition", l.Record)
		}
	})
}

// staleDeleteLock's watch reports "no Lease" only when released, as a watch
// whose first read raced with our create would.
type staleDeleteLock struct {
	*memLock
	release chan struct{}
}

func (l *staleDeleteLock) Watch(ctx context.Context, events chan<- Event) {
	select {
	case <-l.release:
	case <-ctx.Done():
		return
	}
	select {
	case events <- Event{Type: Deleted}:
	case <-ctx.Done():
		return
	}
	l.memLock.Watch(ctx, events)
}

// TestShutdownDuringResignStillReleases: a SIGTERM (Run's ctx ending) that
// arrives while OnStoppedLeading runs cuts neither the callback's context
// nor the release short, so followers take over at once.
func TestShutdownDuringResignStillReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		entered, unblock := make(chan struct{}), make(chan struct{})
		var cbErr error
		o := newOneConfig(t, store, nil, func(l *memLock) Lock { return l }, func(c *Config) {
			c.Callbacks.OnStoppedLeading = func(ctx context.Context, _ State) error {
				close(entered)
				<-unblock
				cbErr = ctx.Err()
				return nil
			}
		})
		if !o.e.State().IsLeader {
			t.Fatal("not leading")
		}
		o.e.Resign(errors.New("status file unwritable"))
		<-entered
		o.cancel() // SIGTERM during the step-down
		synctest.Wait()
		close(unblock)
		synctest.Wait()
		if cbErr != nil {
			t.Errorf("OnStoppedLeading's context ended with Run's: %v", cbErr)
		}
		l, _ := store.current()
		if l.Record.HolderIdentity != "" || l.Record.LeaseDurationSeconds != 1 {
			t.Errorf("record = %+v, want released (no holder, 1s) although Run's context ended during the step-down", l.Record)
		}
		if err := <-o.done; err != nil {
			t.Errorf("Run: %v", err)
		}
		o.cancel = nil
	})
}

// TestOnStartedLeadingEndsAtTheRenewDeadline: no renew runs while the
// callback does, so its context ends when leadership would.
func TestOnStartedLeadingEndsAtTheRenewDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		var o *one
		var endedAt time.Time
		o = newOneConfig(t, store, nil, func(l *memLock) Lock { return l }, func(c *Config) {
			c.Callbacks.OnStartedLeading = func(ctx context.Context, _ State) error {
				<-ctx.Done()
				endedAt = o.clk.Now()
				return nil // it took too long, but says nothing of it
			}
		})
		won := o.clk.Now()
		o.step(rd - time.Millisecond)
		if !endedAt.IsZero() {
			t.Fatalf("OnStartedLeading's context ended at %s, before the renew deadline", endedAt.Sub(won))
		}
		if l, _ := store.current(); !l.Record.RenewTime.Time.Equal(won) {
			t.Errorf("renewTime = %s, want %s: no renew runs while a callback does", l.Record.RenewTime, won)
		}
		o.step(time.Millisecond)
		if got := endedAt.Sub(won); got != rd {
			t.Fatalf("OnStartedLeading's context ended %s after the Lease was won, want RenewDeadline (%s)", got, rd)
		}
		if o.e.State().IsLeader {
			t.Error("still leads after the renew deadline passed during OnStartedLeading")
		}
	})
}

// TestLeadingEndsAtTheRenewDeadlineEvenIfTheLoopDoesNotRun: Leading turns
// false at the renew deadline on the candidate's clock, even while its loop
// is held up (here in a callback, as in a process that was frozen), so that
// outputs acting outside the loop stop before the loop has stepped down.
func TestLeadingEndsAtTheRenewDeadlineEvenIfTheLoopDoesNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		held := make(chan struct{})
		o := newOneConfig(t, store, nil, func(l *memLock) Lock { return l }, func(c *Config) {
			c.Callbacks.OnStartedLeading = func(context.Context, State) error {
				<-held // ignores its context: the loop is stuck here
				return nil
			}
		})
		won := o.clk.Now()
		if !o.e.Leading() {
			t.Fatal("Leading() = false right after the Lease was won")
		}
		if got := o.e.State().LeadUntil; !got.Equal(won.Add(rd)) {
			t.Errorf("LeadUntil = %s after the win, want RenewDeadline later", got.Sub(won))
		}
		o.step(rd - time.Millisecond)
		if !o.e.Leading() {
			t.Error("Leading() = false before the renew deadline")
		}
		o.step(time.Millisecond)
		if s := o.e.State(); !s.IsLeader || o.e.Leading() {
			t.Errorf("at the renew deadline with the loop held: IsLeader=%v Leading()=%v, want true and false", s.IsLeader, o.e.Leading())
		}
		close(held)
		synctest.Wait()
		if o.e.State().IsLeader {
			t.Error("still leads once the loop ran past the renew deadline")
		}
	})
}

// TestLeadUntilFollowsRenewals: each successful renew moves the deadline to
// RenewDeadline after that renew was sent.
func TestLeadUntilFollowsRenewals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOne(t, newMemStore(1))
		for range 3 {
			o.step(rp)
		}
		s := o.e.State()
		if !o.e.Leading() || !s.LeadUntil.Equal(o.clk.Now().Add(rd)) {
			t.Errorf("after renewals: Leading()=%v, LeadUntil %s from now; want true and RenewDeadline", o.e.Leading(), s.LeadUntil.Sub(o.clk.Now()))
		}
		o.stop()
		if s := o.e.State(); o.e.Leading() || !s.LeadUntil.IsZero() {
			t.Errorf("after stopping: Leading()=%v LeadUntil=%s, want false and zero", o.e.Leading(), s.LeadUntil)
		}
	})
}
