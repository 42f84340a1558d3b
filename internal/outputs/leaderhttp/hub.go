// Package leaderhttp tells clients over HTTP who leads: the NAIS elector's
// API (JSON on any path, Server-Sent Events on /sse), which gcr
// leader-elector clients read as well, and the sidecar's own /leader (with a
// long-poll) and /watch. It never names a leader this replica knows has lost
// the Lease.
package leaderhttp

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"sync"
	"time"

	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
)

// Defaults of Config's optional fields.
const (
	DefaultHeartbeat = 20 * time.Second
	DefaultRecheck   = time.Second
	DefaultBuffer    = 16
	// DefaultMaxClients bounds the streams and long-polls of the health
	// port, DefaultMaxPerClient those of one client address there, and
	// DefaultMaxLocalClients those of LEADER_HTTP_ADDRESS: at about 31 KB
	// an idle stream, measured, all of them together cost about 12 MiB, so
	// that a sidecar of about 17 MiB stays under half of deploy/'s 64 MiB
	// limit.
	DefaultMaxClients      = 256
	DefaultMaxPerClient    = 16
	DefaultMaxLocalClients = 128
	DefaultWriteTimeout    = 10 * time.Second
	// MaxWait caps a long-poll's wait.
	MaxWait = 5 * time.Minute
)

// Config configures a Hub. Only State is required.
type Config struct {
	// State returns the election's current State (Elector.State). The hub
	// reads it when a term it announced should end, because renewals move
	// LeadUntil and HeldUntil without a change being observed.
	State func() election.State
	// Clock is the source of time for terms, heartbeats and long-polls;
	// clock.RealClock{} when nil.
	Clock clock.WithTicker
	// Log receives the hub's log; slog.Default() when nil.
	Log *slog.Logger
	// Heartbeat is how often an idle event stream gets a comment line, so
	// that proxies keep it open; DefaultHeartbeat when zero.
	Heartbeat time.Duration
	// Recheck is how often the State is read again while it still names a
	// leader whose term has ended on our clock: a renew seen late extends
	// the term without a change being observed. DefaultRecheck when zero.
	Recheck time.Duration
	// Buffer is how many messages a stream may fall behind before it is
	// dropped; DefaultBuffer when zero.
	Buffer int
	// MaxClients bounds the streams and long-polls Handler serves at once,
	// MaxPerClient those of one client address there; more get 503.
	// DefaultMaxClients and DefaultMaxPerClient when zero.
	MaxClients, MaxPerClient int
	// MaxLocalClients bounds those NAISHandler serves, a pool of its own;
	// DefaultMaxLocalClients when zero.
	MaxLocalClients int
	// WriteTimeout bounds each write to a client, so that a client that
	// stopped reading does not hold its stream forever;
	// DefaultWriteTimeout when zero.
	WriteTimeout time.Duration
}

// Leader is what this replica knows about who leads, as the endpoints show it.
type Leader struct {
	// Name is the live leader, or empty when none is known: none holds the
	// Lease, or its term has ended on this replica's clock.
	Name string
	// AcquireTime is when Name acquired the Lease; zero with Name.
	AcquireTime time.Time
	// IsLeader is true while this replica leads and its renew deadline has
	// not passed.
	IsLeader bool
	// Identity is this replica's.
	Identity string
	// Transitions is the Lease's leaseTransitions.
	Transitions int
}

// leaderOf is who leads at now according to s.
func leaderOf(s election.State, now time.Time) Leader {
	l := Leader{Identity: s.Identity, Transitions: s.Transitions}
	switch {
	case s.IsLeader && now.Before(s.LeadUntil):
		l.Name, l.IsLeader = s.Identity, true
	case s.Leader != "" && s.Leader != s.Identity && now.Before(s.HeldUntil):
		l.Name = s.Leader
	}
	if l.Name != "" {
		l.AcquireTime = s.AcquireTime
	}
	return l
}

// termEnd is when the leader s names stops being named, and whether s names
// a leader whose term already ended (the hub then reads the State again
// every Recheck).
func termEnd(s election.State, l Leader) (end time.Time, ended bool) {
	switch {
	case l.IsLeader:
		return s.LeadUntil, false
	case l.Name != "":
		return s.HeldUntil, false
	}
	return time.Time{}, s.IsLeader || (s.Leader != "" && s.Leader != s.Identity)
}

// naisJSON is the NAIS elector's answer, field for field.
type naisJSON struct {
	Name       string `json:"name,omitempty"`
	LastUpdate string `json:"last_update,omitempty"`
}

// leaderJSON is /leader's answer: the NAIS fields and ours.
type leaderJSON struct {
	Name        string `json:"name,omitempty"`
	LastUpdate  string `json:"last_update,omitempty"`
	IsLeader    bool   `json:"is_leader"`
	Identity    string `json:"identity"`
	Transitions int    `json:"transitions"`
}

func lastUpdate(l Leader) string {
	if l.Name == "" || l.AcquireTime.IsZero() {
		return ""
	}
	return l.AcquireTime.UTC().Format(time.RFC3339)
}

// NAISJSON is the NAIS elector's JSON for l: {"name":..,"last_update":..},
// both omitted while no leader is known.
func NAISJSON(l Leader) []byte {
	b, _ := json.Marshal(naisJSON{Name: l.Name, LastUpdate: lastUpdate(l)}) // strings only: cannot fail
	return b
}

// JSON is /leader's JSON for l.
func JSON(l Leader) []byte {
	b, _ := json.Marshal(leaderJSON{Name: l.Name, LastUpdate: lastUpdate(l), IsLeader: l.IsLeader,
		Identity: l.Identity, Transitions: l.Transitions}) // cannot fail
	return b
}

// format is one of the two JSON answers a stream may carry.
type format int

const (
	formatNAIS format = iota
	formatOurs
	formats
)

// subscriber is one event stream. The hub sends it messages without ever
// waiting; when its buffer is full, the hub drops it by closing msgs.
type subscriber struct {
	format format
	msgs   chan []byte
}

// Hub knows who leads and tells the HTTP clients. Create it with New, feed
// it with Observe, and Run it.
type Hub struct {
	cfg  Config
	clk  clock.WithTicker
	log  *slog.Logger
	kick chan struct{} // the term's end moved: the timer is set again
	own  *pool         // Handler's streams and long-polls
	nais *pool         // NAISHandler's

	mu      sync.Mutex
	state   election.State
	leader  Leader
	msgs    [formats][]byte // the current JSON of each format
	changed chan struct{}   // closed and replaced when the leader changes
	next    time.Time       // when to read the State again; zero: never
	subs    map[*subscriber]struct{}
	closed  bool
}

// New returns a Hub that knows no leader yet.
func New(cfg Config) (*Hub, error) {
	if cfg.State == nil {
		return nil, errors.New("leaderhttp: Config.State is required")
	}
	cfg.Clock = cmp.Or[clock.WithTicker](cfg.Clock, clock.RealClock{})
	cfg.Log = cmp.Or(cfg.Log, slog.Default())
	orDefault(&cfg.Heartbeat, DefaultHeartbeat)
	orDefault(&cfg.Recheck, DefaultRecheck)
	orDefault(&cfg.Buffer, DefaultBuffer)
	orDefault(&cfg.MaxClients, DefaultMaxClients)
	orDefault(&cfg.MaxPerClient, DefaultMaxPerClient)
	orDefault(&cfg.MaxLocalClients, DefaultMaxLocalClients)
	orDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	h := &Hub{cfg: cfg, clk: cfg.Clock, log: cfg.Log, kick: make(chan struct{}, 1),
		own: newPool("the health port", cfg.MaxClients, cfg.MaxPerClient), nais: newPool("LEADER_HTTP_ADDRESS", cfg.MaxLocalClients, 0),
		changed: make(chan struct{}), subs: map[*subscriber]struct{}{}}
	h.msgs[formatNAIS], h.msgs[formatOurs] = NAISJSON(Leader{}), JSON(Leader{})
	return h, nil
}

// Observe takes in a change of the election's State. It never blocks: it is
// Output.Observe.
func (h *Hub) Observe(s election.State) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.applyLocked(s)
}

// Leader returns who leads now.
func (h *Hub) Leader() Leader {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refreshLocked()
	return h.leader
}

// Subscribers is the number of open event streams.
func (h *Hub) Subscribers() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// refreshLocked reads the State again, so that an answer never names a
// leader whose term ended, even in the moment before the timer fires. The
// State is read under h.mu: Observe is called by the only goroutine that
// changes the State, so no older State can be applied after a newer one.
func (h *Hub) refreshLocked() {
	if !h.closed {
		h.applyLocked(h.cfg.State())
	}
}

// applyLocked makes s the hub's State: it tells the streams and long-polls
// when the answer changed, and sets when to look again.
func (h *Hub) applyLocked(s election.State) {
	if h.closed {
		return
	}
	now := h.clk.Now()
	l := leaderOf(s, now)
	h.state = s
	end, ended := termEnd(s, l)
	next := end
	if ended {
		next = now.Add(h.cfg.Recheck)
	}
	if !next.Equal(h.next) {
		h.next = next
		select {
		case h.kick <- struct{}{}:
		default: // a kick is pending; Run reads h.next then
		}
	}
	if l == h.leader {
		return
	}
	if ended && h.leader.Name != "" {
		h.log.Info("leader API: the leader's term ended on this replica's clock with no renew seen; naming no leader",
			"leader", h.leader.Name, "transitions", s.Transitions)
	}
	h.leader = l
	close(h.changed)
	h.changed = make(chan struct{})
	msgs := [formats][]byte{NAISJSON(l), JSON(l)}
	for f := range formats {
		if string(msgs[f]) == string(h.msgs[f]) {
			continue
		}
		h.msgs[f] = msgs[f]
		for sub := range h.subs {
			if sub.format != f {
				continue
			}
			select {
			case sub.msgs <- msgs[f]:
			default:
				h.dropLocked(sub)
				h.log.Warn("leader API: dropped an event stream that fell behind; it reconnects and gets the current leader",
					"behind", h.cfg.Buffer)
			}
		}
	}
}

// subscribe adds a stream of format f and returns it with the current
// message, which it must send first. It returns nil when the hub is closed.
func (h *Hub) subscribe(f format) (*subscriber, []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, nil
	}
	h.refreshLocked()
	sub := &subscriber{format: f, msgs: make(chan []byte, h.cfg.Buffer)}
	h.subs[sub] = struct{}{}
	return sub, h.msgs[f]
}

func (h *Hub) unsubscribe(sub *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.dropLocked(sub)
}

func (h *Hub) dropLocked(sub *subscriber) {
	if _, ok := h.subs[sub]; ok {
		delete(h.subs, sub)
		close(sub.msgs)
	}
}

// wait returns who leads now and a channel closed at the next change (or
// when the hub closes).
func (h *Hub) wait() (Leader, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.refreshLocked()
	return h.leader, h.changed
}

// run ends each announced term on time until ctx ends, then closes the hub:
// every stream and long-poll ends, and Observe does nothing any more.
func (h *Hub) run(ctx context.Context) error {
	defer h.close()
	var timer clock.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for ctx.Err() == nil {
		h.mu.Lock()
		next := h.next
		h.mu.Unlock()
		var fire <-chan time.Time
		switch d := next.Sub(h.clk.Now()); {
		case next.IsZero():
			if timer != nil {
				timer.Stop()
			}
		case d <= 0:
			h.expire()
			continue
		case timer == nil:
			timer = h.clk.NewTimer(d)
			fire = timer.C()
		default:
			timer.Stop()
			timer.Reset(d)
			fire = timer.C()
		}
		select {
		case <-ctx.Done():
		case <-h.kick:
		case <-fire:
			h.expire()
		}
	}
	return nil
}

// expire looks again at the State once a term should have ended.
func (h *Hub) expire() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next = time.Time{} // applying sets the next time
	h.refreshLocked()
}

func (h *Hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.closed = true
	for sub := range h.subs {
		h.dropLocked(sub)
	}
	close(h.changed)
}

// orDefault sets *v to def unless it is above zero.
func orDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}
