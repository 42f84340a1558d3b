package election

import (
	"context"
	"errors"
	"testing"
	"testing/synctest"
)

// TestRetiredLeaderHandsOverAndLeadsNoMore: a leader whose pod is being
// deleted hands the Lease to the peer it names and, like a retired
// follower, never leads, offers or takes an offer again while it runs on.
func TestRetiredLeaderHandsOverAndLeadsNoMore(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		a := g.start("a", g.keyed("a", nil, nil, withUID("uid-a")))
		b := g.start("b", g.keyed("b", nil, nil, withUID("uid-b")))
		c := g.start("c", g.keyed("c", nil, nil, withUID("uid-c")))
		if got := g.leader(); got != "a" {
			t.Fatalf("leader = %q, want a", got)
		}
		before := g.lease()
		if err := a.e.Retire(context.Background(), successor("c")); err != nil {
			t.Fatalf("Retire: %v", err)
		}
		g.settle()
		if got := g.leader(); got != "c" {
			t.Fatalf("leader after a retired naming c = %q", got)
		}
		if l := g.lease(); l.Record.LeaderTransitions != before.Record.LeaderTransitions+1 || l.Notes.HolderUID != "uid-c" {
			t.Errorf("lease after c took it = %+v %+v", l.Record, l.Notes)
		}
		if !a.e.State().Retired || a.stoppedCount() != 1 {
			t.Errorf("a: Retired %v, stopped leading %d times; want true, once", a.e.State().Retired, a.stoppedCount())
		}
		// b retires as a follower; then c releases: nobody who retired
		// takes the Lease, offers to be standby or takes a grant.
		if err := b.e.Retire(context.Background(), Successor{}); err != nil {
			t.Fatalf("Retire of a follower: %v", err)
		}
		g.step(2 * rp)
		if s := g.lease().Notes.Standby; s == "a" || s == "b" {
			t.Errorf("standby = %q, a retired candidate", s)
		}
		if err := c.e.Handover(context.Background(), successor("b")); !errors.Is(err, ErrNotTaken) {
			t.Errorf("Handover to a retired candidate: %v, want ErrNotTaken", err)
		}
		g.step(2 * ld)
		if got := g.leader(); got != "c" && got != "" {
			t.Errorf("leader after the refused offer = %q; a and b retired", got)
		}
		if l := g.lease(); l.Record.HolderIdentity == "a" || l.Record.HolderIdentity == "b" {
			t.Errorf("a retired candidate holds the Lease: %+v", l.Record)
		}
	})
}

// TestRetireWithNoSuccessorReleases: with no peer to name, a retiring leader
// releases the Lease, which a peer takes at once.
func TestRetireWithNoSuccessorReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		a := g.start("a", nil)
		g.start("b", nil)
		if err := a.e.Retire(context.Background(), Successor{}); err != nil {
			t.Fatalf("Retire: %v", err)
		}
		g.settle()
		if got := g.leader(); got != "b" {
			t.Errorf("leader after a retired = %q, want b at once", got)
		}
		if err := a.e.Retire(context.Background(), successor("b")); err != nil {
			t.Errorf("a second Retire: %v, want nothing to do", err)
		}
	})
}

func (m *member) stoppedCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stopped
}
