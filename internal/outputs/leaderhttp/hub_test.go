package leaderhttp

import (
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/election"
)

func TestLeaderOf(t *testing.T) {
	now := t0.Add(time.Minute)
	later, earlier := now.Add(time.Second), now.Add(-time.Second)
	for _, tc := range []struct {
		name string
		s    election.State
		want Leader
	}{
		{"nobody holds the Lease", election.State{Identity: "me", Transitions: 2},
			Leader{Identity: "me", Transitions: 2}},
		{"we lead", election.State{Identity: "me", Leader: "me", IsLeader: true, LeadUntil: later, AcquireTime: t0, Transitions: 3},
			Leader{Name: "me", AcquireTime: t0, IsLeader: true, Identity: "me", Transitions: 3}},
		{"we believe we lead, past our renew deadline", election.State{Identity: "me", Leader: "me", IsLeader: true, LeadUntil: now, AcquireTime: t0},
			Leader{Identity: "me"}},
		{"the Lease names us, but we do not lead", election.State{Identity: "me", Leader: "me", AcquireTime: t0},
			Leader{Identity: "me"}},
		{"another leads", election.State{Identity: "me", Leader: "b", HeldUntil: later, AcquireTime: t0, Transitions: 4},
			Leader{Name: "b", AcquireTime: t0, Identity: "me", Transitions: 4}},
		{"another's term ended on our clock", election.State{Identity: "me", Leader: "b", HeldUntil: earlier, AcquireTime: t0, Transitions: 4},
			Leader{Identity: "me", Transitions: 4}},
		{"another's term ends now", election.State{Identity: "me", Leader: "b", HeldUntil: now, AcquireTime: t0},
			Leader{Identity: "me"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := leaderOf(tc.s, now); got != tc.want {
				t.Errorf("leaderOf = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	berlin := time.FixedZone("CET", 3600)
	for _, tc := range []struct {
		name       string
		l          Leader
		nais, ours string
	}{
		{"no leader", Leader{Identity: "me", Transitions: 7},
			`{}`, `{"is_leader":false,"identity":"me","transitions":7}`},
		{"another leads", Leader{Name: "a", AcquireTime: t0, Identity: "me", Transitions: 3},
			`{"name":"a","last_update":"2026-01-02T03:04:05Z"}`,
			`{"name":"a","last_update":"2026-01-02T03:04:05Z","is_leader":false,"identity":"me","transitions":3}`},
		{"we lead; the time is in UTC and whole seconds, the same on every replica",
			Leader{Name: "me", AcquireTime: t0.Add(123456 * time.Microsecond).In(berlin), IsLeader: true, Identity: "me", Transitions: 4},
			`{"name":"me","last_update":"2026-01-02T03:04:05Z"}`,
			`{"name":"me","last_update":"2026-01-02T03:04:05Z","is_leader":true,"identity":"me","transitions":4}`},
		{"a leader without acquire time", Leader{Name: "a", Identity: "me"},
			`{"name":"a"}`, `{"name":"a","is_leader":false,"identity":"me","transitions":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(NAISJSON(tc.l)); got != tc.nais {
				t.Errorf("NAISJSON = %s, want %s", got, tc.nais)
			}
			if got := string(JSON(tc.l)); got != tc.ours {
				t.Errorf("JSON = %s, want %s", got, tc.ours)
			}
		})
	}
}

func TestNewRequiresState(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without State: no error")
	}
}

// A follower names another leader only until its term ends on the own
// clock; a renew seen in the meantime (no Observe, only a later HeldUntil)
// keeps it named.
func TestTermEnds(t *testing.T) {
	for _, tc := range []struct {
		name string
		// start is the State observed at t0; renewed is the State after
		// a silent renew at t0+10s; both name the leader until their end.
		start, renewed election.State
		end            time.Time // of the renewed term
		leader         string
	}{
		{"another leads",
			leaderState("b", 1, t0.Add(15*time.Second)),
			leaderState("b", 1, t0.Add(25*time.Second)),
			t0.Add(25 * time.Second), "b"},
		{"we lead",
			election.State{Identity: "me", Leader: "me", IsLeader: true, Transitions: 1, AcquireTime: t0, LeadUntil: t0.Add(15 * time.Second)},
			election.State{Identity: "me", Leader: "me", IsLeader: true, Transitions: 1, AcquireTime: t0, LeadUntil: t0.Add(25 * time.Second)},
			t0.Add(25 * time.Second), "me"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, fe, fc := newTestHub(t, func(c *Config) { c.Heartbeat = time.Hour })
			srv, client := newServer(t, h.NAISHandler())
			fe.set(tc.start)
			s := openStream(t, client, srv.URL+"/sse")
			named := `data: {"name":"` + tc.leader + `","last_update":"2026-01-02T03:04:05Z"}` + "\n\n"
			if got := s.next(t); got != named {
				t.Fatalf("on connect: %q, want %q", got, named)
			}
			waitWaiters(t, fc, 2) // the term's timer and the heartbeat

			fc.Step(10 * time.Second)
			fe.extend(tc.renewed)
			fc.Step(6 * time.Second) // past the first term's end: the hub looks again
			waitWaiters(t, fc, 2)    // and sets its timer for the renewed term
			if l := h.Leader(); l.Name != tc.leader {
				t.Fatalf("after a renew: leader %q, want %q", l.Name, tc.leader)
			}

			fc.SetTime(tc.end.Add(-time.Millisecond))
			if l := h.Leader(); l.Name != tc.leader {
				t.Fatalf("just before the end: leader %q, want %q", l.Name, tc.leader)
			}
			fc.SetTime(tc.end) // no renew: the term ends, and the stream hears it
			if got, want := s.next(t), "data: {}\n\n"; got != want {
				t.Fatalf("at the term's end: %q, want %q", got, want)
			}
			if l := h.Leader(); l.Name != "" || l.IsLeader {
				t.Fatalf("after the end: %+v, want no leader", l)
			}
			// Nothing came between: the next message is the next change.
			fe.set(leaderState("c", 2, t0.Add(time.Hour)))
			if got, want := s.next(t), `data: {"name":"c","last_update":"2026-01-02T03:04:05Z"}`+"\n\n"; got != want {
				t.Fatalf("after a new leader: %q, want %q", got, want)
			}
		})
	}
}

// A renew seen after the term ended names the leader again: the hub keeps
// reading the State while it names a leader whose term is over.
func TestLateRenewNamesTheLeaderAgain(t *testing.T) {
	h, fe, fc := newTestHub(t, func(c *Config) { c.Recheck = time.Second })
	fe.set(leaderState("b", 1, t0.Add(15*time.Second)))
	fc.Step(15 * time.Second)
	waitWaiters(t, fc, 1) // the term ended; the recheck's timer is set
	if l := h.Leader(); l.Name != "" {
		t.Fatalf("after the term: leader %q, want none", l.Name)
	}
	fe.extend(leaderState("b", 1, t0.Add(30*time.Second))) // a renew seen late; no Observe
	h.mu.Lock()
	name := h.leader.Name // what was published, without reading the State again
	h.mu.Unlock()
	if name != "" {
		t.Fatalf("published %q before the recheck", name)
	}
	fc.Step(time.Second)
	eventually(t, "the leader named again after the recheck", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.leader.Name == "b"
	})
}
