package election

import (
	"context"
	"testing"
	"testing/synctest"
	"time"
)

// The tests of this file check the rule for a Lease that is deleted or whose
// holder is cleared by hand: such a record is no
// release, so nobody may take it before a holder that may still lead has
// stepped down.

// waitsUntil steps o's clock to just before at and checks that o neither
// leads nor holds the Lease, then to at and checks that it leads.
func (o *one) waitsUntil(at time.Time, why string) {
	o.t.Helper()
	before, _ := o.counts()
	if d := at.Sub(o.clk.Now()) - time.Millisecond; d > 0 {
		o.step(d)
	}
	if o.e.State().IsLeader {
		o.t.Fatalf("leads %s before %s: %s", at.Sub(o.clk.Now()), at, why)
	}
	if started, _ := o.counts(); started != before {
		o.t.Fatalf("started leading %d times before %s: %s", started-before, at, why)
	}
	if l, ok := o.store.current(); ok && l.Record.HolderIdentity == "me" {
		o.t.Fatalf("holds the Lease before %s: %s", at, why)
	}
	o.step(at.Sub(o.clk.Now()))
	if !o.e.State().IsLeader {
		o.t.Fatalf("does not lead at %s: %s", at, why)
	}
}

// putBack checks that o put a deleted Lease back at once, empty and no
// release, with the transitions it last saw.
func (o *one) putBack(transitions int) {
	o.t.Helper()
	l, ok := o.store.current()
	if !ok || l.Record.HolderIdentity != "" || l.Record.LeaseDurationSeconds != int(ld/time.Second) || l.Record.LeaderTransitions != transitions {
		o.t.Fatalf("Lease = %+v (exists %v), want it put back at once with no holder, %ds and transitions %d", l.Record, ok, ld/time.Second, transitions)
	}
}

func (o *one) leadsNow(why string) {
	o.t.Helper()
	if !o.e.State().IsLeader {
		o.t.Fatalf("does not lead at once: %s", why)
	}
}

// TestDeletedLeaseIsPutBackAndTakenLikeAnUnchangedRecord: a follower puts
// a deleted Lease back empty at once and takes it LeaseDuration later.
func TestDeletedLeaseIsPutBackAndTakenLikeAnUnchangedRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		store.operatorWrite(record("other", time.Unix(0, 0), 4))
		o := newOne(t, store)
		o.step(5 * time.Second)
		if !store.operatorDelete() {
			t.Fatal("no Lease to delete")
		}
		synctest.Wait()
		if st := o.e.State(); st.Leader != "" {
			t.Errorf("Leader = %q after the deletion, want none", st.Leader)
		}
		o.putBack(4)
		o.waitsUntil(o.clk.Now().Add(ld), "the holder may still lead, so the put-back record waits like an unchanged one")
		if l, _ := store.current(); l.Record.HolderIdentity != "me" || l.Record.LeaderTransitions != 5 {
			t.Errorf("record = %+v, want held by me with transitions 5, one more than the deleted Lease's", l.Record)
		}
	})
}

// TestCreatesRaceWithADeletion: two followers put a deleted Lease back; the
// Lease is deleted again between their creates, so both succeed. Neither
// leads on a create: one takes the Lease by an update, LeaseDuration later.
func TestCreatesRaceWithADeletion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		store.operatorWrite(record("other", time.Unix(0, 0), 4))
		hold := make(chan struct{})
		var a, b *one
		a = newOneLock(t, store, nil, func(l *memLock) Lock { return l })
		b = newOneLock(t, store, nil, func(l *memLock) Lock {
			return createHook{memLock: l, before: func() { <-hold }}
		})
		a.step(time.Second)
		b.step(0)
		store.operatorDelete()
		synctest.Wait() // a put it back; b's create waits
		a.putBack(4)
		store.operatorDelete()
		close(hold) // b's create lands on the missing Lease
		synctest.Wait()
		b.putBack(4)
		for _, o := range []*one{a, b} {
			if o.e.State().IsLeader {
				t.Fatal("a create decided leadership")
			}
		}
		for range 2 * ld / (100 * time.Millisecond) { // both clocks run
			a.clk.Step(100 * time.Millisecond)
			b.clk.Step(100 * time.Millisecond)
			synctest.Wait()
			if a.e.State().IsLeader && b.e.State().IsLeader {
				t.Fatal("both lead")
			}
		}
		if a.e.State().IsLeader == b.e.State().IsLeader {
			t.Errorf("a leads %v, b leads %v: want exactly one", a.e.State().IsLeader, b.e.State().IsLeader)
		}
	})
}

// createHook runs before ahead of each Create.
type createHook struct {
	*memLock
	before func()
}

func (l createHook) Create(ctx context.Context, rec Record, notes Notes) (Lease, error) {
	l.before()
	return l.memLock.Create(ctx, rec, notes)
}

// pollOnly is a Lock whose watch is down for good, so the candidate learns
// everything from its reads.
type pollOnly struct{ *memLock }

func (l pollOnly) Watch(ctx context.Context, events chan<- Event) {
	select {
	case events <- Event{Type: WatchLost}:
	case <-ctx.Done():
	}
	<-ctx.Done()
}

// TestDeletionLearnedByAReadWaitsFromTheRead: a read that finds no Lease
// says nothing of the renews the candidate did not see before it, so it
// counts LeaseDuration from that read, not from the last holder it saw.
func TestDeletionLearnedByAReadWaitsFromTheRead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		store.operatorWrite(record("other", time.Unix(0, 0), 0))
		o := newOneLock(t, store, nil, func(l *memLock) Lock { return pollOnly{l} })
		store.setFaults(faults{ServerError: 1, GetServerDown: true})
		for i := range 30 { // a minute of failed reads while the holder renews
			o.step(rp)
			store.operatorWrite(record("other", time.Unix(int64(i+1), 0), 0))
		}
		store.operatorDelete()
		store.setFaults(faults{})
		o.step(rp) // this read finds no Lease
		o.putBack(0)
		o.waitsUntil(o.clk.Now().Add(ld), "the holder renewed unseen and may lead until RenewDeadline after the deletion")
	})
}

func TestClearedHolderIsAReleaseOnlyWithOneSecond(t *testing.T) {
	for _, tc := range []struct {
		name    string
		seconds int
		wait    time.Duration // after the clear was seen; 0: take it at once
	}{
		{"released as client-go and this elector write it", 1, 0},
		{"cleared by hand with a normal duration", 15, ld},
		{"cleared with no duration, as a declared empty Lease", 0, ld},
		{"cleared with a longer duration than ours", 40, 40 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore(1)
				store.operatorWrite(record("other", time.Unix(0, 0), 2))
				o := newOne(t, store)
				o.step(5 * time.Second)
				store.operatorWrite(Record{LeaseDurationSeconds: tc.seconds, LeaderTransitions: 2})
				synctest.Wait()
				if tc.wait == 0 {
					o.leadsNow("a record that looks like a release")
					return
				}
				o.waitsUntil(o.clk.Now().Add(tc.wait), "an empty holder that is no release waits like an unchanged record")
			})
		})
	}
}

// TestLongerLeaseOfPreviousHolderOutlivesClearOrDelete: the holder asked
// for 60s; neither a clear with 15s nor a deletion shortens that.
func TestLongerLeaseOfPreviousHolderOutlivesClearOrDelete(t *testing.T) {
	for _, tc := range []struct {
		name string
		op   func(*memStore)
	}{
		{"clear", func(s *memStore) { s.operatorWrite(Record{LeaseDurationSeconds: 15}) }},
		{"delete", func(s *memStore) { s.operatorDelete() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore(1)
				rec := record("other", time.Unix(0, 0), 0)
				rec.LeaseDurationSeconds = 60
				store.operatorWrite(rec)
				o := newOne(t, store)
				seen := o.clk.Now()
				o.step(5 * time.Second)
				tc.op(store)
				synctest.Wait()
				o.waitsUntil(seen.Add(60*time.Second), "the holder asked for 60s")
			})
		})
	}
}

// TestLeaderWhoseLeaseIsDeletedDoesNotRecreateAtOnce: it steps down and
// waits like every follower, so it neither flaps nor races them.
func TestLeaderWhoseLeaseIsDeletedDoesNotRecreateAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		o.leadsNow("creating a missing Lease")
		o.step(rp) // a renew
		o.step(time.Second)
		store.operatorDelete()
		synctest.Wait()
		if o.e.State().IsLeader {
			t.Fatal("still leads after its Lease was deleted")
		}
		if _, stopped := o.counts(); stopped != 1 {
			t.Fatalf("OnStoppedLeading ran %d times, want 1", stopped)
		}
		o.putBack(0)
		o.waitsUntil(o.clk.Now().Add(ld), "followers wait LeaseDuration for the put-back record")
		if started, _ := o.counts(); started != 2 {
			t.Errorf("OnStartedLeading ran %d times, want 2", started)
		}
	})
}

// stalledWatch is a Lock whose watch says it is established and then
// delivers nothing: the candidate learns only from its own requests.
type stalledWatch struct{ *memLock }

func (l stalledWatch) Watch(ctx context.Context, events chan<- Event) {
	select {
	case events <- Event{Type: WatchEstablished}:
	case <-ctx.Done():
	}
	<-ctx.Done()
}

// TestLeaderLearningOfDeletionOnRenewWaits: its renew finds no Lease; it
// steps down and waits a LeaseDuration before it creates the Lease again.
func TestLeaderLearningOfDeletionOnRenewWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOneLock(t, store, nil, func(l *memLock) Lock { return stalledWatch{l} })
		o.leadsNow("creating a missing Lease")
		o.step(time.Second)
		store.operatorDelete()
		o.step(rp - time.Second) // the renew finds no Lease
		if o.e.State().IsLeader {
			t.Fatal("still leads after its renew found no Lease")
		}
		o.putBack(0)
		o.waitsUntil(o.clk.Now().Add(ld), "a deletion learned by a request waits LeaseDuration from then")
	})
}

func TestFirstStartWithoutALeaseCreatesAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		o := newOne(t, newMemStore(1))
		o.leadsNow("no record of the Lease was ever seen")
	})
}
