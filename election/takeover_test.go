package election

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// keyOf is a fixed key per candidate name, so tests can sign as anyone.
func keyOf(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("take-over test key " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

// takeOverGroup starts leader a and followers b, c and d, each keyed (see
// keyed), delivering offers through deliver if set. It records every
// hand-off's answer.
func takeOverGroup(t *testing.T, deliver func(g *group, to *member, offer []byte) error) (g *group, answers *[]error) {
	g = newGroup(t)
	answers = new([]error)
	for _, n := range []string{"a", "b", "c", "d"} {
		g.start(n, g.keyed(n, answers, deliver, nil))
	}
	return g, answers
}

// keyed configures the candidate named name with a key, the address
// "addr-<name>", and a HandOff that delivers the offer to the candidate of
// the group at the address, through deliver if set, recording each answer
// in answers if set; then mod, if set.
func (g *group) keyed(name string, answers *[]error, deliver func(g *group, to *member, offer []byte) error, mod func(*Config)) func(*Config) {
	var mu sync.Mutex
	return func(c *Config) {
		c.Address, c.Key = "addr-"+name, keyOf(name)
		c.Callbacks.HandOff = func(ctx context.Context, identity, address string, offer []byte) error {
			to := g.cands[strings.TrimPrefix(address, "addr-")]
			var err error
			switch {
			case to == nil:
				err = errors.New("connection refused")
			case deliver != nil:
				err = deliver(g, to, offer)
			default:
				err = to.e.TakeOver(ctx, offer)
			}
			if answers != nil {
				mu.Lock()
				*answers = append(*answers, err)
				mu.Unlock()
			}
			return err
		}
		if mod != nil {
			mod(c)
		}
	}
}

// successor is the Successor for the group's candidate named name.
func successor(name string) Successor { return Successor{Identity: name, Address: "addr-" + name} }

// sigterm ends a's Run and waits for it, with no time passing.
func (g *group) sigterm(name string) {
	m := g.cands[name]
	m.cancel()
	synctest.Wait()
	<-m.done
	delete(g.cands, name)
	g.settle()
}

// TestTakeOverIsOneWrite: a graceful step-down with a standby that takes
// the signed offer moves the Lease in one write, the standby's, with no time
// passing, after the old leader stopped leading.
func TestTakeOverIsOneWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, answers := takeOverGroup(t, nil)
		standby := g.waitStandby()
		if got, want := g.lease().Notes.HolderKey, HolderKey(keyOf("a").Public().(ed25519.PublicKey)); got != want {
			t.Fatalf("holder key in the Lease = %q, want a's public key %q", got, want)
		}
		a, next := g.cands["a"], g.cands[standby]
		before := g.writes()
		g.sigterm("a")
		if got := g.leader(); got != standby {
			t.Fatalf("leader after the take-over = %q, want the standby %q, with no time passing", got, standby)
		}
		if n := g.writes() - before; n != 1 {
			t.Errorf("%d writes from the step-down until the standby leads, want 1 (the standby's)", n)
		}
		if len(*answers) != 1 || (*answers)[0] != nil {
			t.Errorf("hand-off answers = %v, want one, nil", *answers)
		}
		a.mu.Lock()
		stopped := a.stopped
		a.mu.Unlock()
		next.mu.Lock()
		started := next.started
		next.mu.Unlock()
		if stopped != 1 || started != 1 {
			t.Errorf("old leader stopped %d times, standby started %d times, want 1 and 1", stopped, started)
		}
		l := g.lease()
		if l.Record.HolderIdentity != standby || l.Record.LeaderTransitions != 1 || l.Notes.HolderKey != HolderKey(keyOf(standby).Public().(ed25519.PublicKey)) || l.Notes.Standby != "" {
			t.Errorf("Lease after the take-over = %+v, want %q holding transitions 1, with its own key and no standby", l, standby)
		}
	})
}

// TestTakeOverOfARenewNotSeenYet: a standby whose watch has not yet
// delivered the leader's last renew, but knows the version that renew was
// written over (Offer.Base), takes the offer without a read: one request,
// its write over the renew's version. Two renews behind, it reads the
// Lease once on the offer and takes it: two requests, still one write, not
// the release and the acquire of a fallback.
func TestTakeOverOfARenewNotSeenYet(t *testing.T) {
	for _, tc := range []struct {
		name     string
		renews   int
		requests int
	}{
		{"one renew behind: written over from what it knows", 1, 1},
		{"two renews behind: read, then written over", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g, answers := takeOverGroup(t, nil)
				standby := g.waitStandby()
				next := g.cands[standby]
				next.lock.holdWatch(true)
				for range tc.renews {
					renewed := g.lease().Version
					for g.lease().Version == renewed {
						g.step(100 * time.Millisecond)
					}
				}
				before, calls := g.writes(), next.lock.callCount()
				g.sigterm("a")
				if got := g.leader(); got != standby {
					t.Fatalf("leader after the take-over = %q, want the standby %q, with no time passing", got, standby)
				}
				if n := g.writes() - before; n != 1 {
					t.Errorf("%d writes from the step-down until the standby leads, want 1 (the standby's)", n)
				}
				if n := next.lock.callCount() - calls; n != tc.requests {
					t.Errorf("the standby sent %d requests on the offer, want %d", n, tc.requests)
				}
				if len(*answers) != 1 || (*answers)[0] != nil {
					t.Errorf("hand-off answers = %v, want one, nil", *answers)
				}
				next.lock.holdWatch(false)
				g.settle()
				if got := g.leader(); got != standby {
					t.Errorf("leader once the held events arrived = %q, want %q", got, standby)
				}
			})
		})
	}
}

// TestTakeOverAfterARenewCutShort: a SIGTERM while the leader's renew is
// on its way back leaves the leader not knowing whether it landed. It reads
// the Lease once and offers the version that is there, so the standby
// still takes over in one write, with no release.
func TestTakeOverAfterARenewCutShort(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, answers := takeOverGroup(t, nil)
		standby := g.waitStandby()
		a := g.cands["a"]
		a.lock.mu.Lock()
		a.lock.lateWrites = rp
		a.lock.mu.Unlock()
		landed := g.writes()
		for g.writes() == landed {
			g.step(10 * time.Millisecond)
		}
		if h := g.lease().Record.HolderIdentity; h != "a" {
			t.Fatalf("the write that landed is %q's, want a's renew", h)
		}
		a.lock.mu.Lock()
		a.lock.lateWrites = 0 // that renew's answer is still late
		a.lock.mu.Unlock()
		before, calls := g.writes(), a.lock.callCount()
		g.sigterm("a")
		if got := g.leader(); got != standby {
			t.Fatalf("leader after the take-over = %q, want the standby %q", got, standby)
		}
		if n := g.writes() - before; n != 1 {
			t.Errorf("%d writes from the step-down until the standby leads, want 1 (the standby's, no release)", n)
		}
		if n := a.lock.callCount() - calls; n != 2 {
			t.Errorf("the old leader sent %d requests on stepping down, want 2 (the read, and the release on the offered version, which the take-over makes fail)", n)
		}
		if len(*answers) != 1 || (*answers)[0] != nil {
			t.Errorf("hand-off answers = %v, want one, nil", *answers)
		}
	})
}

// TestReplayedOffersReadAtMostOncePerOfferReadInterval: an offer signed by the
// holder for a version newer than the standby knows costs one read, and
// repeating it within OfferReadInterval costs none; one for an older version
// costs none at all.
func TestReplayedOffersReadAtMostOncePerOfferReadInterval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, _ := takeOverGroup(t, nil)
		standby := g.waitStandby()
		m := g.cands[standby]
		o := offerFor(g, standby)
		o.Version, o.Term = "1", o.Term+1
		calls := m.lock.callCount()
		if err := m.e.TakeOver(context.Background(), sign(t, o, keyOf("a"))); !errors.Is(err, ErrOfferRefused) || !strings.Contains(err.Error(), "for version 1") {
			t.Fatalf("TakeOver of an offer for version 1: err = %v, want a refusal naming the version", err)
		}
		if n := m.lock.callCount() - calls; n != 0 {
			t.Errorf("an offer for an older version caused %d requests, want none", n)
		}
		o.Version = "1000"
		wire := sign(t, o, keyOf("a"))
		calls = m.lock.callCount()
		for range 5 {
			if err := m.e.TakeOver(context.Background(), wire); !errors.Is(err, ErrOfferRefused) || !strings.Contains(err.Error(), "for version 1000") {
				t.Fatalf("TakeOver of an offer for version 1000: err = %v, want a refusal naming the version", err)
			}
		}
		if n := m.lock.callCount() - calls; n != 1 {
			t.Errorf("5 offers for a version newer than known within no time caused %d requests, want 1 read", n)
		}
		g.step(OfferReadInterval)
		calls = m.lock.callCount()
		_ = m.e.TakeOver(context.Background(), wire)
		if n := m.lock.callCount() - calls; n != 1 {
			t.Errorf("an offer OfferReadInterval later caused %d requests, want 1 read", n)
		}
		if g.leader() != "a" {
			t.Errorf("leader = %q, want a: refused offers change nothing", g.leader())
		}
	})
}

// TestRefusedHandOffFallsBackToARelease: a standby that does not answer
// leaves the leader to release, as without keys: a follower takes the
// Lease with no time passing.
func TestRefusedHandOffFallsBackToARelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, answers := takeOverGroup(t, func(*group, *member, []byte) error { return errors.New("timeout") })
		standby := g.waitStandby()
		before := g.writes()
		g.sigterm("a")
		if got := g.leader(); got == "" || got == "a" {
			t.Fatalf("leader after the release = %q, want a follower (the standby was %q)", got, standby)
		}
		if n := g.writes() - before; n != 2 {
			t.Errorf("%d writes, want 2 (release, take)", n)
		}
		if len(*answers) != 1 || (*answers)[0] == nil {
			t.Errorf("hand-off answers = %v, want one error", *answers)
		}
	})
}

// TestTakeOverAndReleaseRace: the standby takes the offer, but its answer
// is lost, so the leader also releases; or the leader released before a
// late offer arrives. Either way exactly one write wins and one candidate
// leads.
func TestTakeOverAndReleaseRace(t *testing.T) {
	t.Run("answer lost", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g, _ := takeOverGroup(t, func(_ *group, to *member, offer []byte) error {
				if err := to.e.TakeOver(context.Background(), offer); err != nil {
					return err
				}
				return errors.New("answer lost")
			})
			standby := g.waitStandby()
			g.sigterm("a")
			if got := g.leader(); got != standby {
				t.Fatalf("leader = %q, want the standby %q", got, standby)
			}
			if l := g.lease(); l.Record.HolderIdentity != standby || l.Record.LeaderTransitions != 1 {
				t.Errorf("Lease = %+v, want the standby's term 1, not released after it", l.Record)
			}
		})
	})
	t.Run("offer late", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			var late []byte
			g, _ := takeOverGroup(t, func(_ *group, _ *member, offer []byte) error {
				late = offer
				return errors.New("timeout")
			})
			g.waitStandby()
			g.sigterm("a")
			if got := g.leader(); got == "" || got == "a" {
				t.Fatalf("leader after the release = %q, want a follower", got)
			}
			before := g.writes()
			for n := range g.cands {
				if err := g.cands[n].e.TakeOver(context.Background(), late); !errors.Is(err, ErrOfferRefused) {
					t.Errorf("late offer to %s: err = %v, want ErrOfferRefused", n, err)
				}
			}
			g.settle()
			if n := g.writes() - before; n != 0 {
				t.Errorf("late offers caused %d writes, want none", n)
			}
		})
	})
}

// TestTakeOverRefusesWhatDoesNotHold: an offer is taken only when signed by
// the holder's key, for this Lease, from the holder, to this candidate, at
// the version it knows; a refused offer writes nothing.
func TestTakeOverRefusesWhatDoesNotHold(t *testing.T) {
	for _, tc := range []struct {
		name  string
		offer func(g *group, standby string) []byte
		want  string
	}{
		{"signed by another key", func(g *group, standby string) []byte {
			return sign(t, offerFor(g, standby), keyOf("mallory"))
		}, "signature is not the holder's"},
		{"signed by another candidate", func(g *group, standby string) []byte {
			return sign(t, offerFor(g, standby), keyOf(standby))
		}, "signature is not the holder's"},
		{"another lease", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.Lease = "test/other"
			return sign(t, o, keyOf("a"))
		}, `for lease "test/other"`},
		{"to another candidate", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.To = "z"
			return sign(t, o, keyOf("a"))
		}, `for "z"`},
		{"from another holder", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.From = "z"
			return sign(t, o, keyOf("a"))
		}, `from "z"`},
		{"an old version of an earlier term", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.Version, o.Term = "1", o.Term-1
			return sign(t, o, keyOf("a"))
		}, "for version 1 (term -1)"},
		{"a newer version of the same term", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.Version = "1000" // read once: the Lease is not there yet
			return sign(t, o, keyOf("a"))
		}, "for version 1000"},
		{"a renew over the known version that is not there", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.Version, o.Base = "1000", o.Version // written over at once, answered 409
			return sign(t, o, keyOf("a"))
		}, "the Lease changed since version 1000"},
		{"a renew over the known version, signed by another key", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.Version, o.Base = "1000", o.Version
			return sign(t, o, keyOf("mallory"))
		}, "signature is not the holder's"},
		{"a renew over the known version, from another holder", func(g *group, standby string) []byte {
			o := offerFor(g, standby)
			o.Version, o.Base, o.From = "1000", o.Version, "z"
			return sign(t, o, keyOf("a"))
		}, `from "z"`},
		{"not JSON", func(*group, string) []byte { return []byte("take it") }, "not a signed offer"},
		{"unsigned", func(*group, string) []byte { return []byte(`{"offer":{"lease":"test/lease"}}`) }, "signature is not the holder's"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				g, _ := takeOverGroup(t, nil)
				standby := g.waitStandby()
				before := g.writes()
				err := g.cands[standby].e.TakeOver(context.Background(), tc.offer(g, standby))
				if !errors.Is(err, ErrOfferRefused) || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("TakeOver: err = %v, want ErrOfferRefused saying %q", err, tc.want)
				}
				g.settle()
				if n := g.writes() - before; n != 0 || g.leader() != "a" {
					t.Errorf("after a refused offer: %d writes, leader %q; want none, a", n, g.leader())
				}
			})
		})
	}
	t.Run("to the leader", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g, _ := takeOverGroup(t, nil)
			g.waitStandby()
			err := g.cands["a"].e.TakeOver(context.Background(), sign(t, offerFor(g, "a"), keyOf("a")))
			if !errors.Is(err, ErrOfferRefused) || !strings.Contains(err.Error(), "leads already") {
				t.Fatalf("TakeOver on the leader: err = %v, want a refusal", err)
			}
		})
	})
	t.Run("unhealthy standby", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			g, _ := takeOverGroup(t, nil)
			m := g.start("e", func(c *Config) { c.AppHealth = true })
			m.e.ReportAppHealth(false, "GET /healthz: 503")
			g.settle()
			err := m.e.TakeOver(context.Background(), sign(t, offerFor(g, "e"), keyOf("a")))
			if !errors.Is(err, ErrOfferRefused) || !strings.Contains(err.Error(), "503") {
				t.Fatalf("TakeOver on an unhealthy candidate: err = %v, want a refusal naming its health", err)
			}
		})
	})
}

// offerFor is the offer a would sign to standby now.
func offerFor(g *group, standby string) Offer {
	l := g.lease()
	return Offer{Lease: "test/lease", From: l.Record.HolderIdentity, To: standby, Version: l.Version, Term: l.Record.LeaderTransitions}
}

func sign(t *testing.T, o Offer, key ed25519.PrivateKey) []byte {
	t.Helper()
	wire, err := SignOffer(o, key)
	if err != nil {
		t.Fatal(err)
	}
	return wire
}

// TestAnAnswerIsNoTakeOver: a standby's address that answers the offer with
// success but never writes the Lease (a reused pod IP with a catch-all
// server) does not leave the Lease held by nobody until it expires: the
// release on the offered version succeeds, and the others take the Lease
// at once.
func TestAnAnswerIsNoTakeOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, answers := takeOverGroup(t, func(*group, *member, []byte) error { return nil })
		g.waitStandby()
		g.sigterm("a")
		if len(*answers) != 1 || (*answers)[0] != nil {
			t.Fatalf("hand-off answers = %v, want one, nil", *answers)
		}
		l := g.lease()
		if l.Record.HolderIdentity == "a" {
			t.Fatalf("the Lease is still a's after a success answer that wrote nothing: %+v", l.Record)
		}
		g.step(rp + g.tick) // a successor named in the release leads at once, the others after a RetryPeriod
		if got := g.leader(); got == "" || got == "a" {
			t.Errorf("leader %q after the step-down, want one of the followers", got)
		}
	})
}
