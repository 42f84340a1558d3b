package election

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// deafLock is a Lock whose watch, once deaf, drops every new version of the
// Lease: a follower whose watch event has not come yet, as on a Lease with
// hundreds of watchers.
type deafLock struct {
	Lock
	deaf atomic.Bool
}

func (l *deafLock) Watch(ctx context.Context, events chan<- Event) {
	inner := make(chan Event)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { l.Lock.Watch(ctx, inner) })
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-inner:
			if ev.Type == Observed && l.deaf.Load() {
				continue
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// nudgeGroup starts leader a and followers b, c and d, each with the address
// "addr-<name>" and a deafLock; the leader's Nudge pokes the candidate at
// the address, if nudge is set, and records each nudge.
func nudgeGroup(t *testing.T, nudge bool) (g *group, deaf map[string]*deafLock, nudged *[]string) {
	g = newGroup(t)
	deaf = map[string]*deafLock{}
	nudged = new([]string)
	var mu sync.Mutex
	for _, n := range []string{"a", "b", "c", "d"} {
		g.start(n, func(c *Config) {
			c.Address = "addr-" + n
			d := &deafLock{Lock: c.Lock}
			deaf[n] = d
			c.Lock = d
			c.Callbacks.Nudge = func(identity, address string) {
				mu.Lock()
				*nudged = append(*nudged, identity+"@"+address)
				mu.Unlock()
				if m := g.cands[address[len("addr-"):]]; nudge && m != nil {
					m.e.Poke()
				}
			}
		})
	}
	return g, deaf, nudged
}

// TestNudgedStandbyTakesTheLeaseBeforeItsWatch: with every follower's watch
// deaf, the release reaches the standby only through the nudge, and it
// leads with no time passing; without the nudge, nobody does.
func TestNudgedStandbyTakesTheLeaseBeforeItsWatch(t *testing.T) {
	for _, nudge := range []bool{true, false} {
		t.Run(map[bool]string{true: "nudged", false: "not nudged"}[nudge], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g, deaf, nudged := nudgeGroup(t, nudge)
				standby := g.waitStandby()
				if got, want := g.lease().Notes.StandbyAddress, "addr-"+standby; got != want {
					t.Fatalf("standby address in the Lease = %q, want %q", got, want)
				}
				for _, d := range deaf {
					d.deaf.Store(true)
				}
				before := g.writes()
				g.cands["a"].cancel() // SIGTERM
				synctest.Wait()
				<-g.cands["a"].done
				delete(g.cands, "a")
				g.settle()
				if want := []string{standby + "@addr-" + standby}; len(*nudged) != 1 || (*nudged)[0] != want[0] {
					t.Errorf("nudges = %q, want %q", *nudged, want)
				}
				if !nudge {
					if got := g.leader(); got != "" {
						t.Fatalf("leader %q with deaf watches and no nudge", got)
					}
					return
				}
				if got := g.leader(); got != standby {
					t.Fatalf("leader after the release and the nudge = %q, want the standby %q, with no time passing", got, standby)
				}
				if n := g.writes() - before; n != 2 {
					t.Errorf("%d writes from the release until the successor leads, want 2 (release, take)", n)
				}
			})
		})
	}
}

// TestNudgeAfterAHandoverToTheStandby: Handover to the standby nudges it,
// and it confirms the term before its watch tells it.
func TestNudgeAfterAHandoverToTheStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, deaf, nudged := nudgeGroup(t, true)
		standby := g.waitStandby()
		for _, d := range deaf {
			d.deaf.Store(true)
		}
		answer := make(chan error, 1)
		go func() { answer <- g.cands["a"].e.Handover(context.Background(), standby) }()
		g.settle()
		// a's own watch is deaf too: it reads the Lease once at the
		// deadline of its wait for the confirm, and finds it.
		g.step(rd)
		if err := <-answer; err != nil {
			t.Fatalf("Handover: %v", err)
		}
		if len(*nudged) != 1 {
			t.Errorf("nudges = %q, want one, of %q", *nudged, standby)
		}
		if got := g.leader(); got != standby {
			t.Fatalf("leader after the handover to %q = %q", standby, got)
		}
	})
}

// TestPokeIsRateLimited: of a burst of pokes, one is accepted and reads the
// Lease at once; one more read follows PokeInterval later for the rest, and
// nothing after that.
func TestPokeIsRateLimited(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.put(record("other", g.clk.Now(), 3), Notes{Standby: "me"}) // nudges are for the standby
		m := g.start("me", nil)
		reads := func() int { return m.lock.callCount() }
		before := reads()
		accepted := 0
		for range 50 {
			if m.e.Poke() {
				accepted++
			}
		}
		g.settle()
		if accepted != 1 {
			t.Errorf("%d of 50 pokes at one instant accepted, want 1", accepted)
		}
		if n := reads() - before; n != 1 {
			t.Errorf("%d reads right after the burst, want 1", n)
		}
		g.clk.Step(PokeInterval - time.Millisecond)
		g.settle()
		if n := reads() - before; n != 1 {
			t.Errorf("%d reads within PokeInterval of the burst, want 1", n)
		}
		g.clk.Step(time.Millisecond)
		g.settle()
		if n := reads() - before; n != 2 {
			t.Errorf("%d reads PokeInterval after the burst, want 2 (one for the refused pokes)", n)
		}
		g.step(10 * PokeInterval)
		if n := reads() - before; n != 2 {
			t.Errorf("%d reads with no more pokes, want still 2", n)
		}
		if !m.e.Poke() {
			t.Error("a poke PokeInterval after the last accepted one was refused")
		}
		g.settle()
		if n := reads() - before; n != 3 {
			t.Errorf("%d reads after one more poke, want 3", n)
		}
	})
}

// TestPokeWhileLeadingDoesNothing: a leader sends nothing on a poke.
func TestPokeWhileLeadingDoesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		m := g.start("me", nil)
		if g.leader() != "me" {
			t.Fatal("me does not lead")
		}
		before := m.lock.callCount()
		for range 10 {
			m.e.Poke()
			g.settle()
			g.clk.Step(PokeInterval)
			g.settle()
		}
		// 10 PokeIntervals are 1 s, less than a RetryPeriod: no renew is due.
		if n := m.lock.callCount() - before; n != 0 {
			t.Errorf("leader sent %d requests on 10 pokes, want 0", n)
		}
	})
}

// TestPokeWithNoChangeDoesNothing: a poke when the Lease is as the follower
// knows it costs one read and changes nothing: no write, the same leader,
// and the holder's expiry still counted from its first observation.
func TestPokeWithNoChangeDoesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.put(record("other", g.clk.Now(), 3), Notes{Standby: "me"})
		m := g.start("me", nil)
		g.step(time.Second)
		before, st, writes := m.lock.callCount(), m.e.State(), g.writes()
		if !m.e.Poke() {
			t.Fatal("poke refused")
		}
		g.settle()
		after := m.e.State()
		if n := m.lock.callCount() - before; n != 1 {
			t.Errorf("%d requests on a poke, want its one read", n)
		}
		if g.writes() != writes {
			t.Errorf("%d writes on a poke with no change, want 0", g.writes()-writes)
		}
		if after.Leader != "other" || after.IsLeader || !after.HeldUntil.Equal(st.HeldUntil) {
			t.Errorf("state after the poke: leader %q, is leader %v, held until %v; want other, false, %v",
				after.Leader, after.IsLeader, after.HeldUntil, st.HeldUntil)
		}
	})
}

// TestPokeOfAFollowerNobodyNudgesReadsNothing: a nudge goes to the standby
// or the successor alone, so a follower the Lease names neither answers
// anyone's pokes without a read: at N replicas, one sender cannot make
// every follower read the Lease ten times a second.
func TestPokeOfAFollowerNobodyNudgesReadsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.put(record("other", g.clk.Now(), 3), Notes{Standby: "someone"})
		m := g.start("me", nil)
		g.step(time.Second)
		before := m.lock.callCount()
		for range 20 {
			m.e.Poke()
			g.settle()
			g.clk.Step(PokeInterval)
			g.settle()
		}
		if n := m.lock.callCount() - before; n != 0 {
			t.Errorf("a follower that is no standby sent %d requests on 20 pokes over %s, want 0", n, 20*PokeInterval)
		}
	})
}
