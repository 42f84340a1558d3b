package election

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// failingStop makes o's OnStoppedLeading fail until ok is set, as the
// sidecar's does while its status file cannot be removed.
func failingStop(o *one) *atomic.Bool {
	var ok atomic.Bool
	o.mu.Lock()
	o.onStop = func() error {
		if ok.Load() {
			return nil
		}
		return errors.New("remove status file: read-only file system")
	}
	o.mu.Unlock()
	return &ok
}

// TestWithheldStepDownKeepsTheLease: a leader that resigns while its
// leadership cannot be withdrawn keeps the Lease, renewed without leading,
// far past LeaseDuration, so that no other candidate takes it; once the
// callback succeeds it releases at once.
func TestWithheldStepDownKeepsTheLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		ok := failingStop(o)
		o.e.Resign(errors.New("the app is done"))
		synctest.Wait()
		st := o.e.State()
		if st.IsLeader || o.e.Leading() {
			t.Fatal("still leading after the step-down began")
		}
		if !strings.Contains(st.Withdrawing, "read-only") {
			t.Errorf("State.Withdrawing = %q, want the callback's error", st.Withdrawing)
		}
		held, _ := store.current()
		if held.Record.HolderIdentity != "me" {
			t.Fatalf("holder = %q right after the failed step-down, want the Lease kept", held.Record.HolderIdentity)
		}
		for passed := time.Duration(0); passed < 3*ld; passed += rp {
			o.step(rp)
			l, _ := store.current()
			if l.Record.HolderIdentity != "me" || l.Record.LeaseDurationSeconds == 1 {
				t.Fatalf("%s after the failed step-down the Lease is %+v, want it kept", passed+rp, l.Record)
			}
		}
		l, _ := store.current()
		if !l.Record.RenewTime.After(held.Record.RenewTime.Time) {
			t.Errorf("the kept Lease was not renewed: renew time %s, as at the step-down", l.Record.RenewTime)
		}
		if _, stopped := o.counts(); stopped < 3 {
			t.Errorf("OnStoppedLeading ran %d times in %s, want it retried", stopped, 3*ld)
		}
		ok.Store(true)
		o.step(rd) // the longest back-off
		l, _ = store.current()
		if l.Record.HolderIdentity != "" || l.Record.LeaseDurationSeconds != 1 {
			t.Fatalf("once withdrawn, the Lease is %+v, want it released", l.Record)
		}
		if st := o.e.State(); st.Withdrawing != "" || st.IsLeader {
			t.Errorf("after the release: Withdrawing %q, IsLeader %v", st.Withdrawing, st.IsLeader)
		}
	})
}

// TestWithheldShutdownWaits: Run's context ending while leadership cannot
// be withdrawn does not end Run: it keeps the Lease until the callback
// succeeds, then releases and returns.
func TestWithheldShutdownWaits(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		ok := failingStop(o)
		o.cancel()
		for passed := time.Duration(0); passed < 2*ld; passed += rp {
			o.step(rp)
			select {
			case <-o.done:
				t.Fatalf("Run returned %s after its context ended, with leadership not withdrawn", passed+rp)
			default:
			}
			if l, _ := store.current(); l.Record.HolderIdentity != "me" {
				t.Fatalf("%s after the shutdown began the holder is %q, want the Lease kept", passed+rp, l.Record.HolderIdentity)
			}
		}
		ok.Store(true)
		o.step(rd)
		select {
		case err := <-o.done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		default:
			t.Fatal("Run did not return once leadership was withdrawn")
		}
		o.cancel = nil
		if l, _ := store.current(); l.Record.HolderIdentity != "" || l.Record.LeaseDurationSeconds != 1 {
			t.Errorf("after the shutdown the Lease is %+v, want it released", l.Record)
		}
	})
}

// TestWithheldHandoverIsRefused: resign --to while a step-down is withheld
// says why, and hands nothing on until the step-down is done.
func TestWithheldHandoverIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := newMemStore(1)
		o := newOne(t, store)
		ok := failingStop(o)
		errc := make(chan error, 1)
		go func() { errc <- o.e.Handover(t.Context(), Successor{Identity: "peer", Address: "addr-peer"}) }()
		synctest.Wait()
		if err := <-errc; err == nil || !strings.Contains(err.Error(), "read-only") {
			t.Errorf("Handover to peer with a failing step-down: %v, want the callback's error", err)
		}
		if l, _ := store.current(); l.Record.HolderIdentity != "me" {
			t.Fatalf("holder = %q, want the Lease kept, not handed on", l.Record.HolderIdentity)
		}
		go func() { errc <- o.e.Handover(t.Context(), Successor{Identity: "peer", Address: "addr-peer"}) }()
		synctest.Wait()
		if err := <-errc; !errors.Is(err, ErrNotLeader) || !strings.Contains(err.Error(), "withdrawn") {
			t.Errorf("a second Handover meanwhile: %v, want ErrNotLeader saying why", err)
		}
		ok.Store(true)
		o.step(rd)
		// No one takes offers here (no HandOff): the step-down, done at
		// last, releases the Lease.
		if l, _ := store.current(); l.Record.HolderIdentity != "" || l.Record.LeaseDurationSeconds != 1 {
			t.Errorf("once withdrawn, the Lease is %+v, want it released", l.Record)
		}
	})
}
