package election

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The simulations run candidates in a synctest bubble, whose clock is fake:
// minutes of simulated time take milliseconds, and every candidate's clock
// runs at its own rate (drift) against it.
//
// Safety claim checked: no two candidates believe they lead at the same
// simulated instant, for clock rates within maxDrift of each other, with
// graceful step-downs handed to the standby by take-over offers that are
// lost, delayed or whose answers are lost, under injected 500s, spurious conflicts, hung requests, slow requests and
// answers, slow and broken watches, partitions and restarts, and an operator
// who deletes the Lease, clears its holder (with a normal duration) or names
// a holder that is no candidate. A candidate believes it leads from the call
// of its OnStartedLeading until the call of its OnStoppedLeading: the
// interval in which the sidecar's outputs say leader. What the Lease says is
// not a belief: an operator's record is no leader, and the Lease naming a
// candidate that already stepped down is no second leader. The margin needed
// is LeaseDuration/RenewDeadline > (1+maxDrift)/(1-maxDrift). The schedule
// avoids the rule's one exception (see the package doc and startQuiet): it
// deletes the Lease only while every candidate has seen a holder, and starts
// no candidate within startQuiet after a deletion.
//
// Liveness claim checked: after the leader dies, another candidate leads
// within LeaseDuration + RetryPeriod, for clock rates within 5% and request
// and watch delays up to 100ms.

const maxDrift = 0.10

// seeds returns the seeds to run: a fixed set by default, so CI is
// repeatable, or ELECTION_SEED=N for one, ELECTION_SEEDS=K for K from 1.
func seeds(t *testing.T, def int) []uint64 {
	if s := os.Getenv("ELECTION_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("ELECTION_SEED=%q: must be a number", s)
		}
		return []uint64{n}
	}
	if s := os.Getenv("ELECTION_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("ELECTION_SEEDS=%q: must be a number", s)
		}
		def = n
	}
	out := make([]uint64, def)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// sim is a group of candidates on one memStore, with an oracle of beliefs.
type sim struct {
	t     *testing.T
	seed  uint64
	store *memStore
	rng   *rand.Rand
	start time.Time

	mu         sync.Mutex
	leaders    map[string]bool
	violations []string
	elections  int
	cands      map[string]*cand
	heals      sync.WaitGroup // partitions that end later
	takeOvers  atomic.Int32   // offers taken
}

type cand struct {
	id     string
	lock   *memLock
	e      *Elector
	cancel context.CancelFunc
	done   chan struct{}
	// sawHolder is set once the candidate saw a Lease with a holder.
	sawHolder atomic.Bool
}

func newSim(t *testing.T, seed uint64) *sim {
	return &sim{t: t, seed: seed, store: newMemStore(seed), rng: rand.New(rand.NewPCG(seed, 7)),
		start: time.Now(), leaders: map[string]bool{}, cands: map[string]*cand{}}
}

// startCand starts a candidate whose clock runs at rate.
func (s *sim) startCand(id string, rate float64) *cand {
	clk := driftClock{rate: rate, origin: time.Now()}
	c := &cand{id: id, lock: newMemLock(s.store, clk), done: make(chan struct{})}
	e, err := New(Config{
		Lock: c.lock, Identity: id, LeaseDuration: ld, RenewDeadline: rd, RetryPeriod: rp, Clock: clk, Log: quiet,
		Address: id, Key: keyOf(id),
		Callbacks: Callbacks{
			HandOff: s.handOff,
			OnStartedLeading: func(context.Context, State) error {
				s.mu.Lock()
				defer s.mu.Unlock()
				s.leaders[id] = true
				s.elections++
				if len(s.leaders) > 1 {
					s.violations = append(s.violations, fmt.Sprintf("at %s: %v lead together", time.Since(s.start), s.leaders))
				}
				return nil
			},
			OnStoppedLeading: func(context.Context, State) error {
				s.mu.Lock()
				delete(s.leaders, id)
				s.mu.Unlock()
				return nil
			},
			OnChange: func(st State) {
				if st.Leader != "" {
					c.sawHolder.Store(true)
				}
			},
		},
	})
	if err != nil {
		s.t.Fatal(err)
	}
	c.e = e
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		defer close(c.done)
		if err := e.Run(ctx); err != nil {
			s.t.Errorf("Run of %s: %v", id, err)
		}
	}()
	s.mu.Lock()
	s.cands[id] = c
	s.mu.Unlock()
	return c
}

// handOff delivers a take-over offer to the candidate at address, as the
// network does under the store's faults: lost before it arrives, delayed,
// or taken with its answer lost.
func (s *sim) handOff(ctx context.Context, _, address string, offer []byte) error {
	s.mu.Lock()
	to := s.cands[address]
	s.mu.Unlock()
	f := s.store.getFaults()
	if to == nil || s.store.chance(f.ServerError) {
		return errors.New("connection refused")
	}
	time.Sleep(s.store.upTo(f.DelayBefore))
	err := to.e.TakeOver(ctx, offer)
	if err == nil {
		s.takeOvers.Add(1)
	}
	if err == nil && s.store.chance(f.Hang) {
		return errors.New("answer lost")
	}
	return err
}

func (s *sim) stopCand(c *cand) {
	c.lock.partition(false)
	c.cancel()
	<-c.done
}

func (s *sim) stopAll() {
	s.mu.Lock()
	cands := make([]*cand, 0, len(s.cands))
	for _, c := range s.cands {
		cands = append(cands, c)
	}
	s.mu.Unlock()
	for _, c := range cands {
		s.stopCand(c)
	}
}

// startQuiet is how long after a deletion no candidate starts: a starting
// candidate that has seen no record creates a missing Lease as its holder at
// once, as client-go's does, while a leader that has not yet learned of the
// deletion may lead for up to its RenewDeadline, at its clock's rate. That is
// the rule's one exception (see the package doc), which the schedule avoids.
// With the checks in restartCand and anyFresh removed, 4 to 9 seeds in 1000
// showed two leaders (three runs), each right after a start and a deletion.
var startQuiet = time.Duration(math.Ceil(float64(rd)/(1-maxDrift))) + time.Second

// restartCand starts id again, but not within startQuiet of a deletion.
func (s *sim) restartCand(id string, deleted time.Time) {
	if wait := startQuiet - time.Since(deleted); wait > 0 {
		time.Sleep(wait)
	}
	s.startCand(id, s.rate())
}

// anyFresh reports whether a candidate has not yet seen a holder (stricter
// than the elector's "has seen no record"): deleting the Lease then is the
// exception startQuiet avoids.
func (s *sim) anyFresh() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cands {
		if !c.sawHolder.Load() {
			return true
		}
	}
	return false
}

func (s *sim) leader() (string, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.leaders {
		return id, len(s.leaders)
	}
	return "", 0
}

func (s *sim) rate() float64 { return 1 - maxDrift + 2*maxDrift*s.rng.Float64() }

func (s *sim) report() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range s.violations {
		s.t.Errorf("seed %d: two leaders %s (rerun with ELECTION_SEED=%d)", s.seed, v, s.seed)
	}
}

func TestSafetyUnderFaults(t *testing.T) {
	for _, seed := range seeds(t, 30) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { safetyRun(t, seed) })
		})
	}
}

func safetyRun(t *testing.T, seed uint64) {
	s := newSim(t, seed)
	defer s.report()
	chaos := faults{
		ServerError: 0.05, Conflict: 0.05, Hang: 0.02,
		DelayBefore: 500 * time.Millisecond, DelayAfter: 500 * time.Millisecond,
		WatchDelay: 300 * time.Millisecond, WatchDrop: 0.03, WatchOutage: 8 * time.Second,
		GetServerDown: true,
	}
	s.store.setFaults(chaos)
	ids := []string{"a", "b", "c"}
	for _, id := range ids {
		s.startCand(id, s.rate())
	}
	partitions, deletes, clears, foreign := 0, 0, 0, 0
	var deleted time.Time // of the last deletion
	for time.Since(s.start) < 10*time.Minute {
		time.Sleep(time.Duration(s.rng.Int64N(int64(15 * time.Second))))
		s.mu.Lock()
		c := s.cands[ids[s.rng.IntN(len(ids))]]
		s.mu.Unlock()
		switch s.rng.IntN(7) {
		case 0, 1: // a partition of up to 40s
			partitions++
			c.lock.partition(true)
			d := time.Duration(s.rng.Int64N(int64(40 * time.Second)))
			s.heals.Go(func() { time.Sleep(d); c.lock.partition(false) })
		case 2: // a graceful restart with a new clock rate
			s.stopCand(c)
			s.restartCand(c.id, deleted)
		case 3: // a crash: cut off, then stopped while cut off, then back
			c.lock.partition(true)
			time.Sleep(time.Duration(s.rng.Int64N(int64(20 * time.Second))))
			c.cancel()
			<-c.done
			c.lock.partition(false)
			s.restartCand(c.id, deleted)
		case 4: // an operator deletes the Lease, unless a candidate starts
			if s.anyFresh() {
				continue
			}
			if s.store.operatorDelete() {
				deletes++
				deleted = time.Now()
			}
		case 5: // an operator clears the holder, with a normal duration
			l, _ := s.store.current()
			s.store.operatorWrite(Record{LeaseDurationSeconds: int(ld / time.Second), LeaderTransitions: l.Record.LeaderTransitions})
			clears++
		case 6: // an operator names a holder that is no candidate
			l, _ := s.store.current()
			s.store.operatorWrite(Record{HolderIdentity: "operator", LeaseDurationSeconds: int(ld / time.Second),
				AcquireTime: metav1.NewTime(time.Now()), RenewTime: metav1.NewTime(time.Now()), LeaderTransitions: l.Record.LeaderTransitions + 1})
			foreign++
		}
	}
	// Heal everything: a leader must emerge and stay alone.
	s.store.setFaults(faults{})
	s.heals.Wait()
	s.mu.Lock()
	for _, c := range s.cands {
		c.lock.partition(false)
	}
	s.mu.Unlock()
	time.Sleep(2*ld + rp)
	if id, n := s.leader(); n != 1 {
		t.Errorf("seed %d: %d leaders (%q) after healing, want 1", seed, n, id)
	}
	s.stopAll()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.elections < 3 {
		t.Errorf("seed %d: only %d elections in 10 simulated minutes of chaos: the schedule exercised nothing", seed, s.elections)
	}
	t.Logf("seed %d: %d elections (%d by take-over), %d partitions, %d deletes, %d clears, %d foreign holders, %d writes",
		seed, s.elections, s.takeOvers.Load(), partitions, deletes, clears, foreign, s.store.writes)
}

func TestLivenessAfterLeaderDies(t *testing.T) {
	for _, seed := range seeds(t, 30) {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { livenessRun(t, seed) })
		})
	}
}

func livenessRun(t *testing.T, seed uint64) {
	s := newSim(t, seed)
	defer s.report()
	s.store.setFaults(faults{DelayBefore: 50 * time.Millisecond, DelayAfter: 50 * time.Millisecond, WatchDelay: 100 * time.Millisecond})
	for _, id := range []string{"a", "b", "c"} {
		s.startCand(id, 0.95+0.1*s.rng.Float64())
	}
	defer s.stopAll()
	time.Sleep(time.Duration(s.rng.Int64N(int64(time.Minute))) + rp)
	old, n := s.leader()
	if n != 1 {
		t.Fatalf("seed %d: %d leaders before the kill, want 1", seed, n)
	}
	s.mu.Lock()
	dead := s.cands[old]
	s.mu.Unlock()
	dead.lock.partition(true) // dies: no request of it reaches the store again
	died := time.Now()
	// Its own belief ends at its RenewDeadline; the others must not wait longer than the bound.
	bound := ld + rp
	for time.Since(died) <= bound {
		time.Sleep(10 * time.Millisecond)
		s.mu.Lock()
		var other string
		for id := range s.leaders {
			if id != old {
				other = id
			}
		}
		s.mu.Unlock()
		if other != "" {
			t.Logf("seed %d: %s took over %s after %s died", seed, other, time.Since(died), old)
			return
		}
	}
	t.Errorf("seed %d: no new leader within LeaseDuration + RetryPeriod (%s) after %s died (rerun with ELECTION_SEED=%d)", seed, bound, old, seed)
}
