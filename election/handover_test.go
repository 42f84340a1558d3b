package election

import (
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

// group is several candidates on one store and one fake clock. It checks
// after every step that no two of them lead at once. Its tests run inside
// synctest.Test.
type group struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	store *memStore
	cands map[string]*member
	tick  time.Duration // step's granularity: timers due within one fire at once
}

// member is one running candidate of a group. Its key in the group is its
// name, which may differ from its identity (twins share one).
type member struct {
	e      *Elector
	lock   *memLock
	cancel context.CancelFunc
	done   chan error

	mu      sync.Mutex
	started int
	stopped int
}

func newGroup(t *testing.T) *group {
	return &group{t: t, clk: clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		store: newMemStore(1), cands: map[string]*member{}, tick: 100 * time.Millisecond}
}

// start runs a candidate named name, with identity name unless mod changes it.
func (g *group) start(name string, mod func(*Config)) *member {
	m := &member{lock: newMemLock(g.store, g.clk), done: make(chan error, 1)}
	cfg := Config{Lock: m.lock, Identity: name, LeaseDuration: ld, RenewDeadline: rd, RetryPeriod: rp, Clock: g.clk, Log: quiet,
		Callbacks: Callbacks{
			OnStartedLeading: func(context.Context, State) error { m.mu.Lock(); m.started++; m.mu.Unlock(); return nil },
			OnStoppedLeading: func(context.Context, State) error { m.mu.Lock(); m.stopped++; m.mu.Unlock(); return nil },
		}}
	if mod != nil {
		mod(&cfg)
	}
	if os.Getenv("ELECTION_DEBUG") != "" {
		cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("name", name)
	}
	e, err := New(cfg)
	if err != nil {
		g.t.Fatal(err)
	}
	m.e = e
	ctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	go func() { m.done <- e.Run(ctx) }()
	g.cands[name] = m
	g.t.Cleanup(func() { g.stop(name) })
	g.settle()
	return m
}

// stop ends a candidate's Run, as SIGTERM does, and waits for it.
func (g *group) stop(name string) {
	m := g.cands[name]
	if m == nil {
		return
	}
	delete(g.cands, name)
	m.cancel()
	for passed := time.Duration(0); ; passed += rp {
		synctest.Wait()
		select {
		case <-m.done:
			g.check()
			return
		default:
		}
		if passed > rp+rd {
			g.t.Fatalf("%s: Run did not return after its context ended", name)
		}
		g.clk.Step(rp)
	}
}

// crash stops a candidate without letting it touch the Lease again, as
// SIGKILL does: its lock is cut off first.
func (g *group) crash(name string) {
	g.cands[name].lock.partition(true)
	g.stop(name)
}

func (g *group) settle() {
	synctest.Wait()
	g.check()
}

// step advances time in small steps, checking safety after each.
func (g *group) step(d time.Duration) {
	for ; d > 0; d -= g.tick {
		g.clk.Step(min(d, g.tick))
		g.settle()
	}
}

// check fails the test if two candidates lead at once.
func (g *group) check() {
	g.t.Helper()
	var leaders []string
	for name, m := range g.cands {
		if m.e.Leading() {
			leaders = append(leaders, name)
		}
	}
	if len(leaders) > 1 {
		g.t.Fatalf("two leaders at once: %v", leaders)
	}
}

// leader returns the name of the candidate that leads, or "".
func (g *group) leader() string {
	for name, m := range g.cands {
		if m.e.Leading() {
			return name
		}
	}
	return ""
}

func (g *group) lease() Lease {
	l, _ := g.store.current()
	return l
}

func (g *group) writes() int {
	g.store.mu.Lock()
	defer g.store.mu.Unlock()
	return g.store.writes
}

func (g *group) put(rec Record, notes Notes) {
	g.store.mu.Lock()
	g.store.commitNotes(rec, notes)
	g.store.mu.Unlock()
	g.settle()
}

// waitStandby steps time until a follower offered to be standby, at most
// two RetryPeriods (an offer that lost a race to a renew is sent again), and
// returns it.
func (g *group) waitStandby() string {
	g.t.Helper()
	for waited := time.Duration(0); waited <= 2*rp; waited += 100 * time.Millisecond {
		if s := g.lease().Notes.Standby; s != "" {
			return s
		}
		g.step(100 * time.Millisecond)
	}
	g.t.Fatalf("no standby offered within %s", 2*rp)
	return ""
}

func withUID(uid string) func(*Config) { return func(c *Config) { c.UID = uid } }

func TestOneFollowerOffersToBeStandbyOncePerTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.tick = time.Millisecond // offers a millisecond apart do not collide
		g.start("a", nil)
		for _, n := range []string{"b", "c", "d", "e"} {
			g.start(n, nil)
		}
		before := g.writes()
		g.step(rp)
		standby := g.lease().Notes.Standby
		if standby == "" || standby == "a" {
			t.Fatalf("standby after one RetryPeriod = %q, want one of the followers", standby)
		}
		const renews = 1 // the leader renewed once in that RetryPeriod
		if offers := g.writes() - before - renews; offers != 1 {
			t.Errorf("%d offers to be standby, want 1", offers)
		}
		before = g.writes()
		g.step(10 * rp)
		if n := g.writes() - before; n != 10 {
			t.Errorf("%d writes in 10 RetryPeriods, want only the leader's 10 renews", n)
		}
		if got := g.lease().Notes.Standby; got != standby {
			t.Errorf("standby changed from %q to %q: the leader's renews must keep it", standby, got)
		}
	})
}

// TestOfferOnceEvenIfTheLeaderDropsIt: a leader that does not keep the
// annotations (another elector) draws one offer per follower and term, not
// one per renew.
func TestOfferOnceEvenIfTheLeaderDropsIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.put(record("other", g.clk.Now(), 3), Notes{})
		m := g.start("me", nil)
		before := m.lock.callCount()
		for range 300 { // 10 minutes
			g.step(rp)
			g.put(record("other", g.clk.Now(), 3), Notes{})
		}
		if n := m.lock.callCount() - before; n != 1 {
			t.Errorf("follower sent %d requests in 10 minutes, want its one offer", n)
		}
	})
}

// TestGracefulReleaseIsTakenAtOnce: without a take-over (no keys), a
// graceful step-down releases the Lease as client-go's ReleaseOnCancel
// does, and a follower takes it with no time passing.
func TestGracefulReleaseIsTakenAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.start("a", nil)
		for _, n := range []string{"b", "c", "d", "e"} {
			g.start(n, nil)
		}
		g.waitStandby()
		g.cands["a"].cancel() // SIGTERM: no time passes until the handover is done
		synctest.Wait()
		<-g.cands["a"].done
		delete(g.cands, "a")
		g.settle()
		if got := g.leader(); got == "" || got == "a" {
			t.Fatalf("leader after the release = %q, want a follower, with no time passing", got)
		}
	})
}

// TestDeadStandbyCostsNothing: a standby that died since it offered does
// not take the offer; the leader releases, and a live follower takes the
// Lease with no time passing.
func TestDeadStandbyCostsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, answers := takeOverGroup(t, nil)
		standby := g.waitStandby()
		g.crash(standby)
		g.sigterm("a")
		if got := g.leader(); got == "" || got == standby {
			t.Errorf("leader after the release = %q, want a live follower with no time passing", got)
		}
		if len(*answers) != 1 || (*answers)[0] == nil {
			t.Errorf("hand-off answers = %v, want one error: the dead standby", *answers)
		}
	})
}

// TestHandoverToAPeer: Handover(peer) moves the Lease to that peer by a
// take-over, in one write; a follower cannot hand over, the leader cannot
// hand to itself or to a peer with no address, and a zero Successor hands
// to the standby.
func TestHandoverToAPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, _ := takeOverGroup(t, nil)
		a, c := g.cands["a"], g.cands["c"]
		g.waitStandby()
		before, writes := g.lease(), g.writes()
		if err := a.e.Handover(context.Background(), successor("c")); err != nil {
			t.Fatalf("Handover: %v", err)
		}
		g.settle()
		if got := g.leader(); got != "c" {
			t.Fatalf("leader after a handover to c = %q", got)
		}
		l := g.lease()
		if l.Record.LeaderTransitions != before.Record.LeaderTransitions+1 || l.Notes.HolderKey != HolderKey(keyOf("c").Public().(ed25519.PublicKey)) {
			t.Errorf("lease after c took it = %+v %+v", l.Record, l.Notes)
		}
		// c's write, and a's release that answered 409.
		if n := g.writes() - writes; n != 1 {
			t.Errorf("%d writes landed for the handover, want 1 (c's)", n)
		}
		if err := a.e.Handover(context.Background(), successor("b")); !errors.Is(err, ErrNotLeader) {
			t.Errorf("Handover on a follower: %v, want ErrNotLeader", err)
		}
		if err := c.e.Handover(context.Background(), successor("c")); err == nil {
			t.Error("Handover to itself succeeded")
		}
		standby := g.waitStandby()
		other := "b"
		if standby == "b" {
			other = "d"
		}
		if err := c.e.Handover(context.Background(), Successor{Identity: other}); err == nil || g.leader() != "c" {
			t.Errorf("Handover to a peer with no address: %v, leader %q; want an error, and c still leading", err, g.leader())
		}
		// The standby's address is in the Lease.
		if err := c.e.Handover(context.Background(), Successor{Identity: standby}); err != nil {
			t.Fatalf("Handover to the standby by its name alone: %v", err)
		}
		g.settle()
		if got := g.leader(); got != standby {
			t.Fatalf("leader after a handover to the standby %q = %q", standby, got)
		}
		c = g.cands[standby]
		if err := c.e.Handover(context.Background(), Successor{}); err != nil {
			t.Fatalf("Handover to anyone: %v", err)
		}
		g.settle()
		if got := g.leader(); got == standby || got == "" {
			t.Errorf("leader after %s resigned = %q, want another, with no time passing", standby, got)
		}
	})
}

// TestHandoverToADeadPeerIsReleased: a peer that does not answer the offer
// leaves the Lease released at once, for the others to take, and Handover
// says so.
func TestHandoverToADeadPeerIsReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, _ := takeOverGroup(t, nil)
		a := g.cands["a"]
		err := a.e.Handover(context.Background(), successor("gone"))
		if !errors.Is(err, ErrNotTaken) || !strings.Contains(err.Error(), "connection refused") {
			t.Errorf("Handover to a dead peer: %v, want ErrNotTaken with the reason", err)
		}
		g.settle()
		if got := g.leader(); got == "" || got == "a" {
			t.Errorf("leader after a handover to a dead peer = %q, want another with no time passing", got)
		}
	})
}

func TestRestartedSidecarResumesItsTerm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.start("me", withUID("uid-1"))
		g.start("peer", withUID("uid-2"))
		g.step(rp)
		before := g.lease()
		g.crash("me")
		g.step(time.Second)
		g.start("me", withUID("uid-1")) // the kubelet restarts the sidecar container
		if got := g.leader(); got != "me" {
			t.Fatalf("leader right after the restart = %q, want me resumed", got)
		}
		if l := g.lease(); l.Record.LeaderTransitions != before.Record.LeaderTransitions {
			t.Errorf("transitions %d -> %d: a resumed term is no new term", before.Record.LeaderTransitions, l.Record.LeaderTransitions)
		}
	})
}

// TestUnprovenOwnTermIsReleased: a record naming this identity with no pod
// UID (a sidecar without POD_UID, or an older version, wrote it) is released
// at once, so a peer takes over in milliseconds.
func TestUnprovenOwnTermIsReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.put(record("me", g.clk.Now(), 4), Notes{})
		g.start("peer", nil)
		g.start("me", withUID("uid-1"))
		if got := g.leader(); got == "" {
			t.Fatal("no leader right after the restart: the unproven term was not released")
		}
		if l := g.lease(); l.Record.LeaderTransitions != 5 {
			t.Errorf("transitions = %d, want 5: a new term after the release", l.Record.LeaderTransitions)
		}
	})
}

// offerFirst is a Lock whose first Update loses a race to a standby's
// offer: a write of notes alone, the record as it was.
type offerFirst struct {
	Lock
	g    *group
	done bool
}

func (o *offerFirst) Update(ctx context.Context, prev Lease, rec Record, notes Notes) (Lease, error) {
	if !o.done {
		o.done = true
		cur := o.g.lease()
		o.g.store.mu.Lock()
		o.g.store.commitNotes(cur.Record, Notes{Standby: "peer"})
		o.g.store.mu.Unlock()
	}
	return o.Lock.Update(ctx, prev, rec, notes)
}

// TestUnprovenOwnTermIsReleasedAfterAConflict: the release of an unproven
// own term that conflicts with a standby's offer is sent again: the record
// is still the term from before the restart, only its notes changed. (It
// waited LeaseDuration, as for a term it could not judge.)
func TestUnprovenOwnTermIsReleasedAfterAConflict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.put(record("me", g.clk.Now(), 4), Notes{})
		g.start("peer", nil)
		g.start("me", func(c *Config) { c.UID = "uid-1"; c.Lock = &offerFirst{Lock: c.Lock, g: g} })
		g.step(rp)
		if got := g.leader(); got == "" {
			t.Fatalf("no leader %s after the restart: the unproven term's release was not sent again after the conflict", rp)
		}
		if l := g.lease(); l.Record.LeaderTransitions != 5 {
			t.Errorf("transitions = %d, want 5: a new term after the release", l.Record.LeaderTransitions)
		}
	})
}

// TestTwinsNeverBothLead: two pods with the same identity (the same
// spec.hostname) and their own pod UIDs.
func TestTwinsNeverBothLead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		first := g.keyed("twin-1", nil, nil, func(c *Config) { c.Identity, c.UID = "twin", "uid-1" })
		second := g.keyed("twin-2", nil, nil, func(c *Config) { c.Identity, c.UID = "twin", "uid-2" })
		g.start("twin-1", first)
		g.start("twin-2", second)
		g.start("other", g.keyed("other", nil, nil, nil))
		g.step(ld)
		if got := g.leader(); got != "twin-1" {
			t.Fatalf("leader = %q, want twin-1 to keep its term", got)
		}
		if err := g.cands["twin-1"].e.Handover(context.Background(), successor("other")); err != nil {
			t.Fatal(err)
		}
		// An offer to the shared identity goes to one address: that twin
		// alone takes it.
		if err := g.cands["other"].e.Handover(context.Background(), Successor{Identity: "twin", Address: "addr-twin-2"}); err != nil {
			t.Fatal(err)
		}
		g.settle()
		if !g.cands["twin-2"].e.State().IsLeader || g.lease().Notes.HolderUID != "uid-2" {
			t.Fatalf("after an offer to twin-2's address: twin-2 leads %v, holder uid %q", g.cands["twin-2"].e.State().IsLeader, g.lease().Notes.HolderUID)
		}
		// The leading twin pauses past its term; the other takes over, and
		// the paused one, back, does not lead on its old term.
		leading := "twin-2"
		g.cands[leading].lock.partition(true)
		g.step(ld + rd + rp)
		g.cands[leading].lock.partition(false)
		g.step(2 * rp)
		if got := g.leader(); got == leading || got == "" {
			t.Errorf("leader after %s paused = %q, want the other twin or other", leading, got)
		}
	})
}

func gated(c *Config) { c.AppHealth, c.MinTerm = true, 30*time.Second }

// TestUnhealthyCandidateLetsAHealthyOneLead, and leads itself when no
// healthy one does.
func TestUnhealthyCandidateLetsAHealthyOneLead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.put(Record{LeaseDurationSeconds: 1, LeaderTransitions: 2}, Notes{}) // released
		sick := g.start("sick", gated)                                        // not reported healthy yet
		well := g.start("well", gated)
		well.e.ReportAppHealth(true, "ok")
		g.settle()
		g.step(rp + 100*time.Millisecond)
		if got := g.leader(); got != "well" {
			t.Fatalf("leader = %q, want the healthy candidate", got)
		}
		g.stop("well")
		g.step(3 * rp)
		if got := g.leader(); got != "sick" {
			t.Errorf("leader with only an unhealthy candidate left = %q, want it to lead rather than none", got)
		}
		if s := sick.e.State(); s.AppHealthy {
			t.Errorf("State.AppHealthy = true before any report")
		}
	})
}

func TestUnhealthyLeaderHandsOverToAHealthyStandby(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		a := g.start("a", gated)
		a.e.ReportAppHealth(true, "ok")
		g.settle()
		g.step(rp)
		if g.leader() != "a" {
			t.Fatalf("leader = %q, want a", g.leader())
		}
		b := g.start("b", gated) // its app is not healthy yet: no offer
		g.step(2 * rp)
		if s := g.lease().Notes.Standby; s != "" {
			t.Fatalf("standby %q offered before its app was healthy", s)
		}
		a.e.ReportAppHealth(false, "GET /healthz: 503")
		g.step(35 * time.Second) // past MinTerm
		if g.leader() != "a" || !a.e.State().LeadsUnhealthy {
			t.Fatalf("leader = %q, LeadsUnhealthy = %v: with no healthy peer the leader keeps leading and says so", g.leader(), a.e.State().LeadsUnhealthy)
		}
		b.e.ReportAppHealth(true, "ok")
		g.settle()
		g.step(rp + 100*time.Millisecond)
		if got := g.leader(); got != "b" {
			t.Fatalf("leader after b turned healthy = %q, want b", got)
		}
		if g.leader() == "b" && a.e.State().IsLeader {
			t.Error("a still believes it leads")
		}
	})
}

// TestMinTermHoldsOffAHealthHandover: a leader whose app fails right after
// it acquired leads for MinTerm first.
func TestMinTermHoldsOffAHealthHandover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		a := g.start("a", gated)
		a.e.ReportAppHealth(true, "ok")
		g.settle()
		g.step(rp)
		b := g.start("b", gated)
		b.e.ReportAppHealth(true, "ok")
		g.settle()
		g.step(rp)
		a.e.ReportAppHealth(false, "down")
		g.step(20 * time.Second)
		if g.leader() != "a" {
			t.Fatalf("leader %q before MinTerm, want a", g.leader())
		}
		g.step(15 * time.Second)
		if g.leader() != "b" {
			t.Fatalf("leader %q after MinTerm, want b", g.leader())
		}
	})
}

// TestStandbyWithdrawsWhenItsAppFails, so that no release names it.
func TestStandbyWithdrawsWhenItsAppFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.start("a", nil)
		b := g.start("b", gated)
		b.e.ReportAppHealth(true, "ok")
		g.settle()
		if s := g.waitStandby(); s != "b" {
			t.Fatalf("standby = %q, want b", s)
		}
		b.e.ReportAppHealth(false, "down")
		g.settle()
		if s := g.lease().Notes.Standby; s != "" {
			t.Fatalf("standby = %q after its app failed, want withdrawn", s)
		}
		b.e.ReportAppHealth(true, "ok again")
		g.settle()
		if s := g.waitStandby(); s != "b" {
			t.Errorf("standby = %q once its app recovered in the same term, want b again", s)
		}
	})
}

// TestResignedLeaderDoesNotOfferDuringItsBackOff: a leader that resigned
// backs off; were it the standby, the next release would name a candidate
// that cannot take the Lease, and the others would wait a RetryPeriod.
func TestResignedLeaderDoesNotOfferDuringItsBackOff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.tick = 10 * time.Millisecond
		a := g.start("a", nil)
		g.start("b", nil)
		if err := a.e.Handover(context.Background(), Successor{}); err != nil {
			t.Fatal(err)
		}
		g.settle()
		if got := g.leader(); got != "b" {
			t.Fatalf("leader after a resigned = %q, want b", got)
		}
		g.step(rp - 20*time.Millisecond) // within a's back-off of one RetryPeriod
		if s := g.lease().Notes.Standby; s == "a" {
			t.Fatal("a offered to be standby during its back-off")
		}
		if s := g.waitStandby(); s != "a" {
			t.Errorf("standby after a's back-off = %q, want a", s)
		}
	})
}

// TestStandbyWithdrawsWhenItShutsDown, so that the next release does not
// name a candidate that is gone.
func TestStandbyWithdrawsWhenItShutsDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.start("a", nil)
		g.start("b", nil)
		if s := g.waitStandby(); s != "b" {
			t.Fatalf("standby = %q, want b", s)
		}
		g.stop("b")
		if s := g.lease().Notes.Standby; s != "" {
			t.Errorf("standby = %q after it shut down, want withdrawn", s)
		}
	})
}

// TestTwinProcessesNeverBothLead: two processes with one identity and one
// pod UID (two electors in one pod, or both set literally in a manifest)
// tell each other apart by their keys: the one that took the term last
// leads, the other steps down and waits for that term to end.
func TestTwinProcessesNeverBothLead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		twin := func(key string) func(*Config) {
			return func(c *Config) { c.Identity, c.UID, c.Key = "me", "uid-1", keyOf(key) }
		}
		g.start("p1", twin("p1"))
		g.step(rp)
		// The second process resumes the term it finds at its start, as a
		// restarted sidecar would; the first then sees another key renew.
		g.start("p2", twin("p2"))
		g.step(3 * ld) // check() fails the test on any step where both lead
		leaders := 0
		for _, name := range []string{"p1", "p2"} {
			if g.cands[name].e.State().IsLeader {
				leaders++
			}
		}
		if leaders != 1 {
			t.Fatalf("%d of the twin processes lead after %s, want 1", leaders, 3*ld)
		}
		// The leading one dies: the other waits out its term and leads.
		leading, other := "p1", "p2"
		if g.cands["p2"].e.State().IsLeader {
			leading, other = "p2", "p1"
		}
		g.crash(leading)
		g.step(ld + rp)
		if !g.cands[other].e.State().IsLeader {
			t.Errorf("%s does not lead %s after its twin %s died", other, ld+rp, leading)
		}
	})
}

// TestRestartedProcessResumesUnderItsNewKey: the key changes with every
// process, and a restart still resumes its pod's term at once.
func TestRestartedProcessResumesUnderItsNewKey(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		g.start("me", func(c *Config) { c.UID, c.Key = "uid-1", keyOf("run-1") })
		g.start("peer", func(c *Config) { c.UID, c.Key = "uid-2", keyOf("peer") })
		g.step(rp)
		g.crash("me")
		g.step(time.Second)
		g.start("me", func(c *Config) { c.UID, c.Key = "uid-1", keyOf("run-2") })
		if got := g.leader(); got != "me" {
			t.Fatalf("leader right after the restart = %q, want me resumed", got)
		}
		if got, want := g.lease().Notes.HolderKey, HolderKey(keyOf("run-2").Public().(ed25519.PublicKey)); got != want {
			t.Errorf("HolderKey after the resume = %q, want the new process's %q", got, want)
		}
	})
}

// TestHandoverToAnUnhealthyPeerIsRefused: resign --to a peer whose app is
// unhealthy makes the peer refuse the offer with its reason, which
// Handover returns; the Lease is released, and a healthy peer takes it at
// once, instead of a leader that would not lead well, or none until expiry.
func TestHandoverToAnUnhealthyPeerIsRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		a := g.start("a", g.keyed("a", nil, nil, gated))
		a.e.ReportAppHealth(true, "ok")
		g.settle()
		g.step(rp)
		b := g.start("b", g.keyed("b", nil, nil, gated))
		b.e.ReportAppHealth(false, "GET /healthz: status 503")
		g.start("c", g.keyed("c", nil, nil, gated)).e.ReportAppHealth(true, "ok")
		g.settle()
		if g.leader() != "a" {
			t.Fatalf("leader = %q, want a", g.leader())
		}
		err := a.e.Handover(context.Background(), successor("b"))
		if !errors.Is(err, ErrNotTaken) || !strings.Contains(err.Error(), "the app is unhealthy (GET /healthz: status 503)") {
			t.Errorf("Handover to an unhealthy peer: %v, want ErrNotTaken with b's reason", err)
		}
		g.settle()
		if got := g.leader(); got != "c" {
			t.Errorf("leader after b refused = %q, want the healthy c", got)
		}
	})
}

// TestHandoverOverALateOffer: a write lands on the Lease between the
// leader's last view and its offer (a standby's offer the leader has not
// seen yet): the peer, which knows that later version, takes the offer all
// the same, since it names the same term (only notes changed since), and
// leads with no time passing; no release.
func TestHandoverOverALateOffer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g := newGroup(t)
		a := g.start("a", g.keyed("a", nil, nil, withUID("uid-a")))
		g.start("c", g.keyed("c", nil, nil, withUID("uid-c")))
		if g.leader() != "a" {
			t.Fatalf("leader = %q, want a", g.leader())
		}
		a.lock.holdWatch(true)
		l := g.lease()
		g.put(l.Record, Notes{HolderUID: l.Notes.HolderUID, HolderKey: l.Notes.HolderKey, Standby: "c", StandbyAddress: "addr-c"})
		a.lock.holdWatch(false)
		if err := a.e.Handover(context.Background(), successor("c")); err != nil {
			t.Errorf("Handover over a late offer: %v, want c to take it", err)
		}
		g.settle()
		if got, l := g.leader(), g.lease(); got != "c" || l.Record.LeaderTransitions != 1 || l.Notes.HolderUID != "uid-c" {
			t.Errorf("after the handover: leader %q, Lease %+v %+v; want c's term 1, with no release before it", got, l.Record, l.Notes)
		}
	})
}
