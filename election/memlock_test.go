package election

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
)

var leases = schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}

// faults are the misbehaviours a memLock injects, as probabilities per call
// and bounds on delays. The zero value injects nothing.
type faults struct {
	ServerError   float64       // 500 before the write
	Conflict      float64       // a spurious 409
	Hang          float64       // no answer until the caller gives up
	DelayBefore   time.Duration // up to this before the write
	DelayAfter    time.Duration // up to this between the write and the answer
	WatchDelay    time.Duration // up to this per watch event
	WatchDrop     float64       // per event: the watch breaks
	WatchOutage   time.Duration // up to this until a broken watch is back
	GetServerDown bool          // Get fails as well while ServerError
}

// memStore is one Lease in memory, shared by the candidates' memLocks. Its
// watches deliver every change in order, as the API server's do; a watcher
// that falls behind is cut off and must resync, as the API server ends a too
// slow watch.
type memStore struct {
	mu      sync.Mutex
	exists  bool
	rec     Record
	notes   Notes
	version int
	subs    map[*memLock]*memSub
	rng     *rand.Rand
	faults  faults
	writes  int
}

// memSub is one watch's queue of events.
type memSub struct {
	ch     chan Event
	broken chan struct{} // closed when ch overflowed
	cut    bool
}

func newMemStore(seed uint64) *memStore {
	return &memStore{rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), subs: map[*memLock]*memSub{}}
}

func (s *memStore) chance(p float64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return p > 0 && s.rng.Float64() < p
}

func (s *memStore) upTo(d time.Duration) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d <= 0 {
		return 0
	}
	return time.Duration(s.rng.Int64N(int64(d)))
}

func (s *memStore) setFaults(f faults) {
	s.mu.Lock()
	s.faults = f
	s.mu.Unlock()
}

func (s *memStore) getFaults() faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

func (s *memStore) current() (Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Lease{Record: s.rec, Notes: s.notes, Version: strconv.Itoa(s.version)}, s.exists
}

// commit applies a write and tells every watcher; it returns the new Lease.
// The caller holds s.mu.
func (s *memStore) commit(rec Record) Lease { return s.commitNotes(rec, Notes{}) }

// commitNotes is commit with notes. The caller holds s.mu.
func (s *memStore) commitNotes(rec Record, notes Notes) Lease {
	s.version++
	s.rec, s.notes, s.exists = rec, notes, true
	s.writes++
	l := Lease{Record: rec, Notes: notes, Version: strconv.Itoa(s.version)}
	s.publish(Event{Type: Observed, Lease: l})
	return l
}

// remove deletes the Lease, if it exists, and tells every watcher with the
// deletion's version, as the API server's watch does. The caller holds s.mu.
func (s *memStore) remove() bool {
	if !s.exists {
		return false
	}
	s.version++
	s.rec, s.notes, s.exists = Record{}, Notes{}, false
	s.writes++
	s.publish(Event{Type: Deleted, Lease: Lease{Version: strconv.Itoa(s.version)}})
	return true
}

func (s *memStore) publish(ev Event) {
	for _, sub := range s.subs {
		if sub.cut {
			continue
		}
		select {
		case sub.ch <- ev:
		default:
			sub.cut = true
			close(sub.broken)
		}
	}
}

// subscribe registers a watch and returns its queue and the current state,
// atomically, so that the watch misses nothing after what it reports first:
// the relist a real watcher does. The first event has no version for a
// missing Lease, as a relist that finds nothing has none.
func (s *memStore) subscribe(l *memLock) (*memSub, Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub := &memSub{ch: make(chan Event, 16), broken: make(chan struct{})}
	s.subs[l] = sub
	if !s.exists {
		return sub, Event{Type: Deleted}
	}
	return sub, Event{Type: Observed, Lease: Lease{Record: s.rec, Notes: s.notes, Version: strconv.Itoa(s.version)}}
}

func (s *memStore) unsubscribe(l *memLock, sub *memSub) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs[l] == sub {
		delete(s.subs, l)
	}
}

// What an operator does by hand, such as with kubectl: it is no candidate,
// and faults do not touch it.

// operatorDelete deletes the Lease (kubectl delete lease).
func (s *memStore) operatorDelete() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remove()
}

// operatorWrite replaces the record, creating the Lease if it is missing
// (kubectl apply, or a GitOps tool re-applying a declared Lease).
func (s *memStore) operatorWrite(rec Record) Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.commit(rec)
}

// memLock is one candidate's connection to a memStore. Partitioning it
// makes every call hang until the caller gives up, and silences its watch.
type memLock struct {
	store *memStore
	clk   clock.Clock

	mu          sync.Mutex
	lateWrites  time.Duration // the answer of every write comes this late
	partitioned *gate         // nothing passes
	held        *gate         // watch events wait, requests pass
	calls       int           // Get, Create and Update calls
}

func (l *memLock) callCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

func newMemLock(s *memStore, clk clock.Clock) *memLock {
	return &memLock{store: s, clk: clk, partitioned: newGate(), held: newGate()}
}

// holdWatch holds the watch's events where they are while on, as a watch
// whose events the API server has not sent yet; requests still pass.
func (l *memLock) holdWatch(on bool) { l.held.set(on) }

func (l *memLock) Describe() string { return "test/lease" }

func (l *memLock) partition(on bool) { l.partitioned.set(on) }

func (l *memLock) isPartitioned() bool { return l.partitioned.isClosed() }

// gate is a fault a test switches on (closed) and off, which goroutines can
// wait out.
type gate struct {
	mu     sync.Mutex
	closed bool
	opened chan struct{} // closed when the gate opens
}

func newGate() *gate { return &gate{opened: make(chan struct{})} }

func (g *gate) set(closed bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if closed == g.closed {
		return
	}
	g.closed = closed
	if !closed {
		close(g.opened)
		g.opened = make(chan struct{})
	}
}

func (g *gate) isClosed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.closed
}

// wait waits while the gate is closed; false when ctx ended first.
func (g *gate) wait(ctx context.Context) bool {
	g.mu.Lock()
	closed, opened := g.closed, g.opened
	g.mu.Unlock()
	if !closed {
		return true
	}
	select {
	case <-opened:
		return true
	case <-ctx.Done():
		return false
	}
}

func (l *memLock) sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	select {
	case <-l.clk.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// call runs op with the injected faults around it.
func (l *memLock) call(ctx context.Context, write bool, op func() (Lease, error)) (Lease, error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return Lease{}, err // a client sends nothing on a context that ended
	}
	f := l.store.getFaults()
	if l.isPartitioned() || l.store.chance(f.Hang) {
		<-ctx.Done()
		return Lease{}, ctx.Err()
	}
	if err := l.sleep(ctx, l.store.upTo(f.DelayBefore)); err != nil {
		return Lease{}, err
	}
	if (write || f.GetServerDown) && l.store.chance(f.ServerError) {
		return Lease{}, apierrors.NewInternalError(errors.New("injected"))
	}
	if write && l.store.chance(f.Conflict) {
		return Lease{}, apierrors.NewConflict(leases, "lease", errors.New("injected"))
	}
	l.store.mu.Lock()
	res, err := op()
	l.store.mu.Unlock()
	// The write is done; the answer may still be late or never come.
	late := l.store.upTo(f.DelayAfter)
	if write {
		l.mu.Lock()
		late += l.lateWrites
		l.mu.Unlock()
	}
	if err := l.sleep(ctx, late); err != nil {
		return Lease{}, err
	}
	if l.isPartitioned() {
		<-ctx.Done()
		return Lease{}, ctx.Err()
	}
	return res, err
}

func (l *memLock) Get(ctx context.Context) (Lease, error) {
	return l.call(ctx, false, func() (Lease, error) {
		if !l.store.exists {
			return Lease{}, apierrors.NewNotFound(leases, "lease")
		}
		return Lease{Record: l.store.rec, Notes: l.store.notes, Version: strconv.Itoa(l.store.version)}, nil
	})
}

func (l *memLock) Create(ctx context.Context, rec Record, notes Notes) (Lease, error) {
	return l.call(ctx, true, func() (Lease, error) {
		if l.store.exists {
			return Lease{}, apierrors.NewAlreadyExists(leases, "lease")
		}
		return l.store.commitNotes(rec, notes), nil
	})
}

func (l *memLock) Update(ctx context.Context, prev Lease, rec Record, notes Notes) (Lease, error) {
	return l.call(ctx, true, func() (Lease, error) {
		if !l.store.exists {
			return Lease{}, apierrors.NewNotFound(leases, "lease")
		}
		if prev.Version != strconv.Itoa(l.store.version) {
			return Lease{}, apierrors.NewConflict(leases, "lease", errors.New("version changed"))
		}
		return l.store.commitNotes(rec, notes), nil
	})
}

// Watch delivers every change in order, with delays, breaks now and then,
// and resumes by sending the current version, as a re-list would.
func (l *memLock) Watch(ctx context.Context, events chan<- Event) {
	send := func(ev Event) bool {
		select {
		case events <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for {
		sub, first := l.store.subscribe(l)
		resync := l.follow(ctx, sub, first, send)
		l.store.unsubscribe(l, sub)
		if !resync {
			return
		}
		if !send(Event{Type: WatchLost, Err: errors.New("injected watch break")}) {
			return
		}
		if l.isPartitioned() {
			if !l.partitioned.wait(ctx) {
				return
			}
		} else if l.sleep(ctx, l.store.upTo(l.store.getFaults().WatchOutage)) != nil {
			return
		}
	}
}

// follow sends what sub receives until the watch breaks (true: resync) or
// ctx ends (false).
func (l *memLock) follow(ctx context.Context, sub *memSub, first Event, send func(Event) bool) bool {
	if !send(Event{Type: WatchEstablished}) || !send(first) {
		return false
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-sub.broken:
			return true
		case ev := <-sub.ch:
			f := l.store.getFaults()
			if l.sleep(ctx, l.store.upTo(f.WatchDelay)) != nil {
				return false
			}
			if l.isPartitioned() || l.store.chance(f.WatchDrop) {
				return true
			}
			if !l.held.wait(ctx) || !send(ev) {
				return false
			}
		}
	}
}

// driftClock runs at rate times real time (the synctest bubble's fake time),
// modelling a node whose clock is fast or slow.
type driftClock struct {
	rate   float64
	origin time.Time
}

var _ clock.WithDelayedExecution = driftClock{}

// real converts a local duration to real time, rounding up, so that a timer
// never fires before its local time has come (else a 1ns wait could fire with
// no local time passing, forever).
func (c driftClock) real(d time.Duration) time.Duration {
	if d <= 0 {
		return d
	}
	return time.Duration(math.Ceil(float64(d)/c.rate)) + 1
}
func (c driftClock) Now() time.Time {
	return c.origin.Add(time.Duration(float64(time.Since(c.origin)) * c.rate))
}
func (c driftClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }
func (c driftClock) After(d time.Duration) <-chan time.Time {
	return c.NewTimer(d).C()
}
func (c driftClock) NewTimer(d time.Duration) clock.Timer {
	return &driftTimer{c: c, t: time.NewTimer(c.real(d))}
}
func (c driftClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return &driftTimer{c: c, t: time.AfterFunc(c.real(d), f)}
}
func (c driftClock) Sleep(d time.Duration)                 { time.Sleep(c.real(d)) }
func (c driftClock) Tick(d time.Duration) <-chan time.Time { return time.Tick(c.real(d)) }

type driftTimer struct {
	c driftClock
	t *time.Timer
}

func (t *driftTimer) C() <-chan time.Time        { return t.t.C }
func (t *driftTimer) Stop() bool                 { return t.t.Stop() }
func (t *driftTimer) Reset(d time.Duration) bool { return t.t.Reset(t.c.real(d)) }
