package election

import (
	"context"
	"errors"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leader-elector/leader-elector/internal/lasterr"
)

// TestWriteTakesInEveryAnswerOneWay drives run.write, the one path of every
// Lease write, over a stale version (a conflict), a current one, and a
// deleted Lease, in each of its modes.
func TestWriteTakesInEveryAnswerOneWay(t *testing.T) {
	held := Record{HolderIdentity: "me", LeaseDurationSeconds: 15, LeaderTransitions: 3}
	tests := []struct {
		name      string
		w         write
		stale     bool // another write lands between the read and the write
		deleted   bool
		failing   bool // the API answers 500
		wantErr   func(error) bool
		wantWrite int // successful writes of the store by this write
		needRead  bool
		noted     bool // State.LastError names the write
		clears    bool // an error noted before is cleared
	}{
		{name: "success is observed and clears the error", w: write{}, wantWrite: 1, clears: true},
		{name: "an ending write clears no error", w: write{ending: true}, wantWrite: 1},
		{name: "an optional write clears no error", w: write{optional: true}, wantWrite: 1},
		{name: "a conflict makes the loop read", w: write{}, stale: true, wantErr: apierrors.IsConflict, needRead: true},
		{name: "writeAgain writes over what is there now", w: write{conflict: writeAgain}, stale: true, wantWrite: 1, clears: true},
		{name: "a conflict that answers reads nothing", w: write{conflict: answered}, stale: true, wantErr: apierrors.IsConflict},
		{name: "an optional write's conflict is not noted", w: write{optional: true, conflict: answered}, stale: true, wantErr: apierrors.IsConflict},
		{name: "a failure is noted", w: write{}, failing: true, wantErr: apierrors.IsInternalError, noted: true},
		{name: "an optional write's failure is not noted", w: write{optional: true}, failing: true, wantErr: apierrors.IsInternalError},
		{name: "a deleted Lease is taken in as gone", w: write{}, deleted: true, wantErr: apierrors.IsNotFound},
		{name: "a build that declines sends nothing", w: write{build: func(cur Lease) (Record, Notes, bool) { return cur.Record, cur.Notes, false }},
			wantErr: func(err error) bool { return errors.Is(err, errNothingToWrite) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newMemStore(1)
			clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			e, err := New(Config{Lock: newMemLock(store, clk), Identity: "me", LeaseDuration: ld, RenewDeadline: rd, RetryPeriod: rp, Clock: clk, Log: quiet})
			if err != nil {
				t.Fatal(err)
			}
			r := &run{e: e, cfg: e.cfg, log: e.log, errs: lasterr.New(quiet, "election error", "election recovered")}
			ctx := context.Background()
			r.observe(ctx, store.operatorWrite(held), clk.Now())
			r.note(ctx, errors.New("earlier trouble"))
			switch {
			case tt.stale:
				store.operatorWrite(held)
			case tt.deleted:
				store.operatorDelete()
			case tt.failing:
				store.setFaults(faults{ServerError: 1})
			}
			w := tt.w
			w.what, w.timeout, w.over = r.about("test"), rd, r.lease
			if w.build == nil {
				w.build = func(cur Lease) (Record, Notes, bool) {
					rec := cur.Record
					rec.RenewTime.Time = clk.Now()
					return rec, Notes{HolderUID: "uid"}, true
				}
			}
			before := store.writes
			l, err := r.write(ctx, w)
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !tt.wantErr(err) {
				t.Fatalf("write: err = %v", err)
			}
			if got := store.writes - before; got != tt.wantWrite {
				t.Errorf("%d writes landed, want %d", got, tt.wantWrite)
			}
			if tt.wantWrite == 1 && (r.lease.Version != l.Version || r.lease.Notes.HolderUID != "uid") {
				t.Errorf("the answer %s was not observed: the loop knows %s", l.Version, r.lease.Version)
			}
			if r.needRead != tt.needRead {
				t.Errorf("needRead = %v, want %v", r.needRead, tt.needRead)
			}
			if tt.deleted && r.view != viewAbsent {
				t.Errorf("view = %v after NotFound, want absent", r.view)
			}
			last := e.State().LastError
			switch {
			case tt.clears && last != "":
				t.Errorf("LastError = %q, want it cleared", last)
			case !tt.clears && !tt.noted && last != "earlier trouble":
				t.Errorf("LastError = %q, want the earlier error kept", last)
			case !tt.clears && last == "":
				t.Error("LastError was cleared")
			}
			if tt.noted != (err != nil && last == err.Error()) {
				t.Errorf("LastError = %q, noted %v; the write's error: %v", last, !tt.noted, err)
			}
		})
	}
}
