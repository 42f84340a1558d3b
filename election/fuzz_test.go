package election

import (
	"context"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Operator changes FuzzDecision applies while the candidate waits.
const (
	fuzzNoOp uint8 = iota
	fuzzDelete
	fuzzClear   // empty holder, normal duration
	fuzzForeign // another holder, by hand
	fuzzOps
)

// FuzzDecision feeds one candidate, on a fake clock, an arbitrary record of
// the Lease: any holder (empty, its own identity, huge), any duration
// (zero, negative, huge), any renew and acquire time (zero, far past, far
// future) and transitions, then maybe deletes, clears or overwrites it.
// It checks, besides that nothing panics, the decision rule of the package
// doc: a release is taken at once; any other record not before its expiry
// from the candidate's first observation (LeaseDuration, or the record's
// duration if larger, capped at the Lease's int32), nor before
// LeaseDuration after the operator's change was seen; and it is taken at
// that instant, no later.
//
// Run it with: go test -run='^$' -fuzz=FuzzDecision -fuzztime=5s ./election/
func FuzzDecision(f *testing.F) {
	f.Add("other", int64(15), int64(1767225600), int64(1767225600), int64(4), fuzzNoOp, uint8(0))
	f.Add("", int64(1), int64(0), int64(0), int64(0), fuzzNoOp, uint8(0))
	f.Add("", int64(15), int64(0), int64(0), int64(3), fuzzNoOp, uint8(0))
	f.Add("other", int64(60), int64(-1), int64(0), int64(0), fuzzDelete, uint8(5))
	f.Fuzz(func(t *testing.T, holder string, seconds, renewUnix, acquireUnix, transitions int64, op, opAt uint8) {
		rec := Record{
			HolderIdentity:       holder,
			LeaseDurationSeconds: int(seconds),
			AcquireTime:          unixOrZero(acquireUnix),
			RenewTime:            unixOrZero(renewUnix),
			LeaderTransitions:    int(transitions),
		}
		synctest.Test(t, func(t *testing.T) { decide(t, rec, op%fuzzOps, time.Duration(opAt%30)*time.Second) })
	})
}

func unixOrZero(sec int64) metav1.Time {
	if sec == 0 {
		return metav1.Time{} // missing
	}
	return metav1.NewTime(time.Unix(sec, 0))
}

// decide runs one case of FuzzDecision.
func decide(t *testing.T, rec Record, op uint8, opAfter time.Duration) {
	store := newMemStore(1)
	store.operatorWrite(rec)
	var lock *writeLog
	o := newOneLock(t, store, nil, func(l *memLock) Lock { lock = &writeLog{memLock: l}; return lock })
	seen := o.clk.Now() // its first read, which has no delay here
	if rec.HolderIdentity == "" && rec.LeaseDurationSeconds == 1 {
		if !o.e.State().IsLeader {
			t.Fatalf("record %+v looks like a release but was not taken at once", rec)
		}
		return
	}
	secs := min(max(int64(rec.LeaseDurationSeconds), 0), maxLeaseSeconds)
	deadline := seen.Add(max(ld, time.Duration(secs)*time.Second))
	if op != fuzzNoOp && opAfter < deadline.Sub(seen) {
		o.step(opAfter)
		var next Record // what the operator writes; the candidate writes it back empty after a delete
		switch op {
		case fuzzDelete:
			store.operatorDelete()
		case fuzzClear:
			next = Record{LeaseDurationSeconds: int(ld / time.Second), LeaderTransitions: rec.LeaderTransitions}
			store.operatorWrite(next)
		case fuzzForeign:
			next = Record{HolderIdentity: "operator", LeaseDurationSeconds: int(ld / time.Second),
				LeaderTransitions: rec.LeaderTransitions + 1}
			store.operatorWrite(next)
		}
		synctest.Wait()
		if op == fuzzDelete || !sameRecord(next, rec) { // rewriting the same record changes nothing
			deadline = later(deadline, o.clk.Now().Add(ld))
		}
	}
	if d := deadline.Sub(o.clk.Now()) - time.Millisecond; d > 0 {
		o.step(d)
	}
	if w, ok := lock.firstTake(); ok {
		t.Fatalf("record %+v (operator change %d after %s): took the Lease at %s, %s before it expired",
			rec, op, opAfter, w.Sub(seen), deadline.Sub(w))
	}
	if o.e.State().IsLeader {
		t.Fatalf("record %+v: leads before it expired", rec)
	}
	o.step(deadline.Sub(o.clk.Now()))
	if !o.e.State().IsLeader {
		l, _ := store.current()
		t.Fatalf("record %+v (operator change %d after %s): not leading once it expired, %s after it was seen; Lease %+v",
			rec, op, opAfter, deadline.Sub(seen), l.Record)
	}
}

// writeLog is a Lock that notes when the candidate wrote itself as holder.
type writeLog struct {
	*memLock
	mu    sync.Mutex
	takes []time.Time
}

func (l *writeLog) note(rec Record) {
	if rec.HolderIdentity == "me" {
		l.mu.Lock()
		l.takes = append(l.takes, l.clk.Now())
		l.mu.Unlock()
	}
}

func (l *writeLog) firstTake() (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.takes) == 0 {
		return time.Time{}, false
	}
	return l.takes[0], true
}

func (l *writeLog) Create(ctx context.Context, rec Record, notes Notes) (Lease, error) {
	l.note(rec)
	return l.memLock.Create(ctx, rec, notes)
}

func (l *writeLog) Update(ctx context.Context, prev Lease, rec Record, notes Notes) (Lease, error) {
	l.note(rec)
	return l.memLock.Update(ctx, prev, rec, notes)
}
