// Package election elects one leader among candidates that share a Lease.
//
// Followers watch the Lease instead of polling it and take it the moment it is
// released, or once its record has stayed unchanged for LeaseDuration on their
// own monotonic clock. The leader renews every RetryPeriod and steps down when
// RenewDeadline has passed since it sent its last successful renew. Because a
// follower can only have seen that renew after it was sent, and
// RenewDeadline < LeaseDuration, the leader has stepped down before any
// follower may judge the Lease expired, as long as the two clocks' rates differ
// by less than the factor LeaseDuration/RenewDeadline.
//
// # Releases, cleared holders and deleted Leases
//
// A Lease counts as released only when its record looks like a release: no
// holder and a LeaseDurationSeconds of 1, as this package and client-go's
// ReleaseOnCancel write it. A follower takes a released Lease at once.
//
// Any other record, also one whose holder was cleared by hand or by a tool
// that re-applies a declared Lease, waits like an unchanged record: its
// expiry (LeaseDuration, or the record's LeaseDurationSeconds if larger)
// after the follower first saw it, and never less than the expiry of every
// holder it saw since the last release, counted from when it first saw that
// holder's last record. So clearing a holder, or naming one by hand, never
// shortens the wait for a holder that may still lead.
//
// A deleted Lease is treated like an unchanged record too. A candidate that
// has seen a record of the Lease and finds it missing (a Deleted event, or a
// read or write answered NotFound) puts it back at once, as an empty record
// with its own LeaseDuration (never 1 second, which would read as a release)
// and the last transitions it saw, and takes that record like any other: by
// an update, once it expired. It does not create the Lease as its holder,
// because a create carries no version: if the Lease is deleted between two
// candidates' creates, both succeed, and both would lead. Every holder that
// may lead wrote its last renew before the deletion, so before the put-back
// record was first seen, and it steps down within RenewDeadline of that
// renew. This holds whether or not the follower saw the renews before the
// deletion. A leader that finds its Lease deleted (from its watch, or its
// renew answered NotFound) steps down, without a release, and then acts as
// any follower: it puts the Lease back and waits, so it cannot take the
// Lease straight back and flap.
//
// The one exception is the first start: a candidate that has seen no record
// of the Lease and finds none creates it as its holder and leads at once, as
// client-go's does. If the Lease was deleted just before, while a leader's
// requests hang and its watch is stalled, both lead until that leader's
// renew deadline. Followers that already run put a deleted Lease back within
// one watch event, which closes this window for candidates that start later.
//
// # Callbacks
//
// The package knows nothing about files, labels or HTTP: it reports leadership
// through Callbacks and State, and others react. Callbacks run on the election
// loop, so no renew is sent while one runs: OnStartedLeading's context ends at
// the renew deadline (RenewDeadline after the winning write was sent), and a
// candidate whose OnStartedLeading outlasts it steps down as soon as it
// returns.
//
// Stepping down runs in this order: the candidate stops believing it leads,
// OnStoppedLeading runs (the sidecar removes the status file and sets the role
// label to follower there), then the Lease is released if it is still ours.
// Both run on a context that outlives the end of Run's context, each with its
// own bound (RetryPeriod for the callback, RenewDeadline for the release on
// shutdown or resignation), so that a SIGTERM during a step-down still
// releases the Lease. Acquiring runs the other way: the Lease is won, then
// OnStartedLeading runs.
//
// # A step-down that cannot be withdrawn
//
// OnStoppedLeading returns an error when the app may still act as leader
// (the sidecar's status file could not be removed). Then the candidate has
// not stepped down: it no longer leads (State.IsLeader is false, Leading too),
// but it keeps the Lease, renewing it every RetryPeriod as in a term, sends
// no release, offer or grant, offers itself as nobody's standby and
// campaigns for nothing, and retries the callback with a back-off
// (RetryPeriod, doubling, up to RenewDeadline), reported in
// State.Withdrawing. Once the callback succeeds the step-down goes on as
// usual. This holds after Run's context ended too: Run returns only once the
// callback succeeded, or never, until the process is killed. A step-down
// that found the Lease already another's, deleted, or unrenewable cannot
// keep it: that candidate retries the callback and campaigns for nothing
// until it succeeds, but the Lease's next holder may lead meanwhile.
package election

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/internal/lasterr"
)

// Config configures an Elector. New validates it.
type Config struct {
	// Lock stores the Lease. Required.
	Lock Lock
	// Identity is written as the Lease's holderIdentity. Required, unique per candidate.
	Identity string
	// LeaseDuration is how long a follower waits, after it first saw the current
	// record, before it may take a Lease that was not released.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps leading after it sent its last
	// successful renew. It must be less than LeaseDuration.
	RenewDeadline time.Duration
	// RetryPeriod is how often the leader renews, and how often a follower
	// polls while its watch is down. RenewDeadline must exceed 1.2 x RetryPeriod.
	RetryPeriod time.Duration
	// Callbacks react to leadership changes. All are optional.
	Callbacks Callbacks
	// Clock is the source of time; clock.RealClock{} when nil.
	Clock clock.WithDelayedExecution
	// Logger receives one line per leadership event; slog.Default() when nil.
	Logger *slog.Logger
	// UID is the own pod's UID (POD_UID), written beside the holder as
	// Notes.HolderUID. With it, a restarted sidecar that finds its identity
	// and UID in the Lease resumes its term at once, and two pods that share
	// one Identity never both lead. Optional.
	UID string
	// AppHealth makes the campaign follow the app's health as reported by
	// ReportAppHealth; the app counts as unhealthy until the first report.
	// An unhealthy candidate campaigns a RetryPeriod later than a healthy
	// one would, so it leads only when no healthy candidate took the Lease.
	AppHealth bool
	// MinTerm is the least time a leader leads before it hands over because
	// its app is unhealthy.
	MinTerm time.Duration
	// Address is where this candidate takes a nudge (see Poke), such as
	// POD_IP:HEALTH_PORT: written beside its standby offer as
	// Notes.StandbyAddress, for the leader's Callbacks.Nudge. Optional.
	Address string
	// Key signs this candidate's take-over offers (see Offer): its public
	// half is written beside the record while this candidate leads, as
	// Notes.HolderKey. With it and Callbacks.HandOff, a graceful step-down
	// hands the Lease to the standby in one write. Optional; one per
	// process, never stored.
	Key ed25519.PrivateKey
}

// Callbacks are run by the election loop, one at a time, in order. While one
// runs, the loop neither renews nor handles watch events: keep them short.
type Callbacks struct {
	// OnStartedLeading runs right after the Lease was won. Its context ends
	// at the renew deadline, after which the candidate steps down. An error
	// gives the Lease back at once and backs off before the next campaign.
	OnStartedLeading func(ctx context.Context, s State) error
	// OnStoppedLeading runs once this candidate no longer believes it leads,
	// before the Lease is released. Its context ends after RetryPeriod, also
	// when Run's context ended first. An error means the app may still act
	// as leader: the Lease is kept, renewed, and nothing hands it on until a
	// retry of the callback succeeds (see the package doc).
	OnStoppedLeading func(ctx context.Context, s State) error
	// OnChange runs when the observed leader, the transitions or IsLeader change.
	OnChange func(s State)
	// Nudge runs once this candidate released the Lease naming a successor,
	// or handed it to the standby, that offered an address: it should make
	// that candidate's Poke run, at address. It runs on the election loop
	// right after the write succeeded, and must not block.
	Nudge func(identity, address string)
	// HandOff sends offer, signed, to the standby identity at address,
	// whose Elector.TakeOver should take it, and returns nil once the
	// standby answered that it took the Lease. It runs on the election loop
	// right after a graceful step-down, before any release, within ctx.
	HandOff func(ctx context.Context, identity, address string, offer []byte) error
}

// State is a snapshot of what a candidate knows.
type State struct {
	Identity string
	// Leader is the Lease's holder as last observed; empty when released,
	// cleared or deleted.
	Leader string
	// IsLeader is true while this candidate leads.
	IsLeader bool
	// Transitions is the Lease's leaseTransitions: it grows with every change
	// of holder, so it serves as a fencing token.
	Transitions int
	AcquireTime time.Time
	RenewTime   time.Time
	// LastObserved is the local time the Lease was last read or watched.
	LastObserved time.Time
	// Watching is true while the Lease's watch delivers events.
	Watching bool
	// LastTick is the local time the election loop last ran.
	LastTick time.Time
	// LastError is the latest error of the election, empty once it recovered.
	LastError string
	// LeadUntil is, while IsLeader, the renew deadline on this candidate's
	// clock: RenewDeadline after the send time of its last successful renew.
	// It leads no longer than that unless a renew succeeds; see Leading.
	LeadUntil time.Time
	// HeldUntil is, while Leader names another candidate, when that
	// candidate's term ends on this candidate's clock unless it renews: the
	// record's first observation plus its expiry. Past it, this candidate
	// knows no live leader. Zero while Leader is empty or this candidate.
	HeldUntil time.Time
	// Standby is the follower that offered to lead next, as last observed.
	Standby string
	// AppHealthy is false while Config.AppHealth is set and the app's last
	// reported health was bad (or none was reported yet).
	AppHealthy bool
	// AppHealth is the reason given with the last health report.
	AppHealth string
	// LeadsUnhealthy is true while this candidate leads although its app is
	// unhealthy, because no healthy follower has offered to take over.
	LeadsUnhealthy bool
	// Withdrawing is, while a step-down waits for OnStoppedLeading to
	// succeed, its last error; empty otherwise. Meanwhile the candidate
	// keeps the Lease, renewed, without leading.
	Withdrawing string
}

// Elector runs one candidate's election. Create it with New, start it with Run.
type Elector struct {
	cfg      Config
	log      *slog.Logger
	resign   chan error
	handover chan handoverRequest
	health   chan struct{} // a new report is in reported
	poke     chan struct{} // Poke was called
	takeOver chan takeOverRequest

	pokeMu  sync.Mutex
	pokedAt time.Time // when Poke last accepted a poke

	reportMu sync.Mutex
	reported appHealth

	mu    sync.Mutex
	state State
}

// New validates cfg and returns an Elector.
func New(cfg Config) (*Elector, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.RealClock{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("lease", cfg.Lock.Describe(), "identity", cfg.Identity)
	return &Elector{cfg: cfg, log: log, resign: make(chan error, 1), handover: make(chan handoverRequest), takeOver: make(chan takeOverRequest),
		health: make(chan struct{}, 1), poke: make(chan struct{}, 1), state: State{Identity: cfg.Identity, AppHealthy: !cfg.AppHealth}}, nil
}

func (c Config) validate() error {
	var errs []error
	if c.Lock == nil {
		errs = append(errs, errors.New("election config: Lock is required"))
	}
	if c.Identity == "" {
		errs = append(errs, errors.New("election config: Identity is required"))
	}
	if err := c.Timings().Validate(); err != nil {
		errs = append(errs, fmt.Errorf("election config: %w", err))
	}
	if c.MinTerm < 0 {
		errs = append(errs, fmt.Errorf("election config: MinTerm is %s: must not be negative", c.MinTerm))
	}
	return errors.Join(errs...)
}

// Timings returns the config's three durations.
func (c Config) Timings() Timings {
	return Timings{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
}

// State returns a snapshot of what the candidate knows.
func (e *Elector) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// Leading reports whether this candidate leads now: it believes so, and its
// renew deadline (State.LeadUntil) has not passed on its clock. Outputs that
// act as leader outside the election loop check it right before each action:
// a process that was frozen (SIGSTOP, a paused VM) past its renew deadline
// then does nothing as leader when it resumes, before its election loop has
// even run to step down, while a follower may already lead.
func (e *Elector) Leading() bool {
	s := e.State()
	return s.IsLeader && e.cfg.Clock.Now().Before(s.LeadUntil)
}

// Resign asks the candidate to step down, release the Lease and stay out of
// the next campaigns for a growing back-off. cause is logged and reported in
// State.LastError. It does not block; a candidate that does not lead only
// backs off.
func (e *Elector) Resign(cause error) {
	select {
	case e.resign <- cause:
	default: // a resignation is already pending
	}
}

// Run campaigns until ctx ends. Then, if it leads, it steps down and releases
// the Lease so that a follower takes over at once, and returns nil. Errors on
// the way are retried, logged once each and reported in State.LastError; the
// error result is for callers that treat Run like other long-running parts.
func (e *Elector) Run(ctx context.Context) error {
	events := make(chan Event)
	watchCtx, stopWatch := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { e.cfg.Lock.Watch(watchCtx, events) })
	defer wg.Wait()
	defer stopWatch()

	r := &run{Elector: e, needRead: true, backoff: e.cfg.RetryPeriod, fresh: true, healthy: !e.cfg.AppHealth,
		errs: lasterr.New(e.log, "election error", "election recovered")}
	if e.cfg.Key != nil {
		r.holderKey = HolderKey(e.cfg.Key.Public().(ed25519.PublicKey))
	}
	due := make(chan time.Time)
	close(due) // for work that is due now: select it without a timer
	for {
		if ctx.Err() != nil { // no new campaign once ctx ended
			r.shutdown(ctx)
			return nil
		}
		r.tick(ctx, e.cfg.Clock.Now())
		wake, stop := (<-chan time.Time)(due), func() bool { return false }
		now := e.cfg.Clock.Now()
		if wait := r.next(now).Sub(now); wait > 0 {
			timer := e.cfg.Clock.NewTimer(wait)
			wake, stop = timer.C(), timer.Stop
		}
		select {
		case <-ctx.Done():
			stop()
			r.shutdown(ctx)
			return nil
		case ev := <-events:
			stop()
			r.handle(ctx, ev)
		case cause := <-e.resign:
			stop()
			r.resign(ctx, cause)
		case req := <-e.handover:
			stop()
			r.handOverRequest(ctx, req)
		case req := <-e.takeOver:
			stop()
			req.done <- r.takeOffer(ctx, req.offer)
		case <-e.health:
			stop()
			r.takeHealth()
		case <-e.poke:
			stop()
			r.poked(e.cfg.Clock.Now())
		case <-wake:
		}
	}
}

// view is what a candidate knows of the Lease's existence.
type view int

const (
	viewUnknown view = iota // not read yet
	viewAbsent              // the Lease does not exist
	viewKnown               // lease holds the latest version we know
)

// run is the state of one Run; only its goroutine touches it.
type run struct {
	*Elector

	// lease is the latest version we know. When the Lease is deleted it keeps
	// the last record (for its transitions) and the deletion's version (to
	// drop older events).
	lease      Lease
	view       view
	observedAt time.Time // when the current record was first seen
	// holderUntil is when every holder seen since the last release has
	// stepped down, unless it renewed: the latest first observation of a
	// record that is no release, plus that record's expiry. Zero after a
	// release.
	holderUntil time.Time
	// seen is true once a record of the Lease was observed: a candidate
	// that has seen none creates a missing Lease as its holder (first start).
	seen         bool
	needRead     bool // act only after a fresh Get
	readFailed   bool // the last Get failed
	lastRead     time.Time
	watching     bool
	lastWatchErr string

	leading     bool
	renewSentAt time.Time // send time of the last successful renew
	lastAttempt time.Time // send time of the last renew attempt

	notBefore time.Time // no campaign before this (back-off)
	backoff   time.Duration
	errs      *lasterr.Tracker

	acquiredAt   time.Time // send time of the write that began this term
	healthy      bool      // the app's health, true unless Config.AppHealth
	healthReason string
	standbyAt    time.Time // when to offer as standby; zero: not scheduled
	// fresh is true until the first record was looked at: only then may a
	// record naming this identity, with no pod UID, be a term of this pod
	// before a restart.
	fresh bool
	// first is the first record looked at: a record naming this identity
	// with no pod UID that still carries its renew time is the same term
	// from before the start, even if a write of notes (a standby's offer)
	// came between, so it may still be released.
	first   Record
	claimed string // version of the last record naming us that we acted on
	warned  bool   // logged that a record naming us is not ours to take
	// offered is true once this candidate offered to be standby in the term
	// whose transitions are offeredIn.
	offered    bool
	offeredIn  int
	offerRaces int  // offers that lost to another write
	renewCut   bool // the last renew's answer was cut off by the end of Run's context
	stopped    bool // Run's context ended: no more offers
	// pokeAt is when a poke's read is due; zero: none. pokeRead and
	// offerRead are when the last read a poke, and a take-over offer,
	// caused was done.
	pokeAt, pokeRead, offerRead time.Time
	holderKey                   string // Config.Key's public half, as Notes.HolderKey
	// withheld is a step-down whose OnStoppedLeading failed; nil: none.
	withheld *withheldStepDown
	// granted is a grant (resign --to) whose answer is awaited; nil: none.
	granted *grantWait
}

// withheldStepDown is a step-down that waits for OnStoppedLeading to
// succeed, and what it does then.
type withheldStepDown struct {
	release time.Duration // the release's bound; 0: no release
	grantTo string        // hand the Lease to this candidate instead
	retryAt time.Time
	backoff time.Duration
}

// tick does what is due at now.
func (r *run) tick(ctx context.Context, now time.Time) {
	r.update(func(s *State) { s.LastTick = now })
	if g := r.granted; g != nil && !now.Before(g.until) {
		// The watch may lag: one read before answering that the peer did
		// not confirm.
		r.read(ctx, now)
		r.answerGrant(&r.lease, now)
	}
	if r.withheld != nil {
		r.tickWithheld(ctx, now)
		return
	}
	if r.leading {
		r.pokeAt = time.Time{} // a leader reads nothing on a poke
		if !now.Before(r.renewDeadline()) {
			// The API did not answer for RenewDeadline: try one quick release
			// and go on as a follower.
			r.stepDown(ctx, fmt.Sprintf("no successful renew for %s (RenewDeadline)", r.cfg.RenewDeadline), r.cfg.RetryPeriod)
			r.notBefore = now.Add(r.cfg.RetryPeriod)
			return
		}
		if !now.Before(r.lastAttempt.Add(r.cfg.RetryPeriod)) {
			r.renew(ctx, now)
		}
		r.checkHealth(ctx, r.cfg.Clock.Now())
		return
	}
	if at, ok := r.readAt(); ok && !now.Before(at) {
		r.read(ctx, now)
		r.pokeAt = time.Time{} // that read serves a pending poke too
	} else if !r.pokeAt.IsZero() && !now.Before(r.pokeAt) {
		r.pokeAt, r.pokeRead = time.Time{}, now
		r.log.Debug("reading the lease on a nudge")
		r.read(ctx, now)
	}
	if r.claimOwn(ctx) {
		return
	}
	if r.canCampaign(r.cfg.Clock.Now()) {
		r.acquire(ctx)
		return
	}
	r.standby(ctx, r.cfg.Clock.Now())
}

// renewDeadline is when the leader steps down unless a renew succeeds.
func (r *run) renewDeadline() time.Time { return r.renewSentAt.Add(r.cfg.RenewDeadline) }

// readAt returns when a follower must read the Lease: at once when it knows
// its view is stale, every RetryPeriod while reads fail or the watch is down.
func (r *run) readAt() (time.Time, bool) {
	switch {
	case r.needRead && !r.readFailed:
		return r.lastRead, true
	case r.needRead || !r.watching:
		return r.lastRead.Add(r.cfg.RetryPeriod), true
	}
	return time.Time{}, false
}

// next returns when tick has something to do.
func (r *run) next(now time.Time) time.Time {
	t := now.Add(r.cfg.RetryPeriod) // heartbeat, for liveness
	earliest := func(u time.Time) {
		if u.Before(t) {
			t = u
		}
	}
	if g := r.granted; g != nil {
		earliest(g.until)
	}
	if w := r.withheld; w != nil {
		earliest(w.retryAt)
		if r.holdsLease() {
			earliest(r.lastAttempt.Add(r.cfg.RetryPeriod))
		} else if at, ok := r.readAt(); ok {
			earliest(at)
		}
		return t
	}
	if r.leading {
		earliest(r.lastAttempt.Add(r.cfg.RetryPeriod))
		earliest(r.renewDeadline())
		if end := r.acquiredAt.Add(r.cfg.MinTerm); !r.healthy && now.Before(end) {
			earliest(end) // then checkHealth hands over; after it, events do
		}
		return t
	}
	if !r.standbyAt.IsZero() {
		earliest(r.standbyAt)
	}
	if !r.pokeAt.IsZero() {
		earliest(r.pokeAt)
	}
	if at, ok := r.readAt(); ok {
		earliest(at)
	}
	if at, ok := r.campaignAt(); ok {
		earliest(at)
	}
	return t
}

// campaignAt returns when this candidate may write to take the Lease: a
// missing Lease at once (on first start as its holder, else as an empty
// record that is then taken like any other), a release at once, any other
// record once every holder seen may have stepped down.
//
// A release that names another candidate as successor waits a RetryPeriod,
// so that only the successor writes; and while the app is unhealthy every
// campaign waits a RetryPeriod more, so that a healthy candidate wins.
func (r *run) campaignAt() (time.Time, bool) {
	var at time.Time
	switch {
	case r.needRead || r.view == viewUnknown:
		return time.Time{}, false
	case r.view == viewAbsent:
		at = r.observedAt
	case isRelease(r.lease.Record):
		at = r.observedAt
		if s := r.lease.Notes.Successor; s != "" && s != r.cfg.Identity {
			at = at.Add(r.cfg.RetryPeriod)
		}
	default:
		at = r.holderUntil
	}
	if !r.healthy {
		at = at.Add(r.cfg.RetryPeriod)
	}
	return later(at, r.notBefore), true
}

func (r *run) canCampaign(now time.Time) bool {
	at, ok := r.campaignAt()
	return ok && !now.Before(at)
}

// isRelease reports whether rec looks like a Lease given back by its holder,
// which this elector and client-go's ReleaseOnCancel write as an empty holder
// with a LeaseDurationSeconds of 1. Any other empty holder is no release.
func isRelease(rec Record) bool { return rec.HolderIdentity == "" && rec.LeaseDurationSeconds == 1 }

// maxLeaseSeconds caps a record's LeaseDurationSeconds at what the Lease can
// store (an int32), so that a huge value saturates instead of overflowing.
const maxLeaseSeconds = 1<<31 - 1

// expiry is how long an unchanged record must be observed before it is
// expired: our own LeaseDuration, or the record's if it asks for more.
func (r *run) expiry(rec Record) time.Duration {
	secs := min(max(rec.LeaseDurationSeconds, 0), maxLeaseSeconds)
	return max(time.Duration(secs)*time.Second, r.cfg.LeaseDuration)
}

// noteHolder takes in a record first seen at now: a release ends the wait for
// every holder seen before; any other record, with or without a holder, may
// mean a holder that leads until its expiry from now.
func (r *run) noteHolder(rec Record, now time.Time) {
	if isRelease(rec) {
		r.holderUntil = time.Time{}
		return
	}
	r.holderUntil = later(r.holderUntil, now.Add(r.expiry(rec)))
}

// gone takes in that the Lease does not exist; version is the deletion's,
// if known.
func (r *run) gone(ctx context.Context, now time.Time, version string) {
	if r.view != viewAbsent {
		r.observedAt = now
	}
	r.view = viewAbsent
	if version != "" {
		r.lease.Version = version
	}
	r.update(func(s *State) { s.LastObserved, s.HeldUntil = now, time.Time{} })
	if r.leading {
		r.stepDown(ctx, "the Lease was deleted", noRelease)
	}
	r.setLeader(Record{})
}

// handle applies one event of the watch.
func (r *run) handle(ctx context.Context, ev Event) {
	now := r.cfg.Clock.Now()
	switch ev.Type {
	case Observed:
		r.observe(ctx, ev.Lease, now)
	case Deleted:
		if ev.Lease.Version == "" {
			// A read found no Lease, but it may predate a create we already
			// know of (ours, even): check instead of believing it.
			if r.view == viewKnown {
				r.needRead = true
				return
			}
			r.gone(ctx, now, "")
			return
		}
		if r.lease.Version != "" && !newer(ev.Lease.Version, r.lease.Version) {
			return // older than what we know
		}
		r.gone(ctx, now, ev.Lease.Version)
	case WatchEstablished:
		r.watching, r.lastWatchErr = true, ""
		r.update(func(s *State) { s.Watching = true })
	case WatchLost:
		r.watching = false
		if now.After(r.lastRead) {
			r.lastRead = now // the watch was current until now: first poll one RetryPeriod later
		}
		r.update(func(s *State) { s.Watching = false })
		if ev.Err != nil && ev.Err.Error() != r.lastWatchErr {
			r.log.Warn("lease watch lost; polling until it is back", "every", r.cfg.RetryPeriod, "err", ev.Err)
		}
		r.lastWatchErr = ""
		if ev.Err != nil {
			r.lastWatchErr = ev.Err.Error()
		}
	}
}

// observe takes in a version of the Lease read from the API.
func (r *run) observe(ctx context.Context, l Lease, now time.Time) {
	if r.lease.Version != "" && !newer(l.Version, r.lease.Version) {
		return // stale or already known
	}
	if r.view != viewKnown || !sameRecord(l.Record, r.lease.Record) {
		r.observedAt = now
		r.noteHolder(l.Record, now)
	}
	r.lease, r.view, r.seen = l, viewKnown, true
	var heldUntil time.Time
	if h := l.Record.HolderIdentity; h != "" && !r.ours(l) {
		heldUntil = r.observedAt.Add(r.expiry(l.Record))
	}
	r.update(func(s *State) { s.LastObserved, s.HeldUntil, s.Standby = now, heldUntil, l.Notes.Standby })
	r.answerGrant(&l, now)
	if r.leading && !r.ours(l) {
		r.stepDown(ctx, fmt.Sprintf("the Lease is held by %q (pod uid %q)", l.Record.HolderIdentity, l.Notes.HolderUID), noRelease)
	}
	r.setLeader(l.Record)
}

// read gets the Lease.
func (r *run) read(ctx context.Context, now time.Time) {
	rctx, cancel := r.withTimeout(ctx, r.cfg.RenewDeadline)
	defer cancel()
	l, err := r.cfg.Lock.Get(rctx)
	r.lastRead, r.readFailed = now, err != nil && !apierrors.IsNotFound(err)
	switch {
	case apierrors.IsNotFound(err):
		r.needRead = false
		r.note(ctx, nil)
		r.gone(ctx, r.cfg.Clock.Now(), "")
	case err != nil:
		r.note(ctx, fmt.Errorf("read lease %s: %w", r.cfg.Lock.Describe(), err))
	default:
		r.needRead = false
		r.note(ctx, nil)
		r.observe(ctx, l, r.cfg.Clock.Now())
	}
}

// acquire tries to take the Lease, which is released or expired, or puts
// a missing Lease back.
func (r *run) acquire(ctx context.Context) {
	sent := r.cfg.Clock.Now()
	rctx, cancel := r.withTimeout(ctx, r.cfg.RenewDeadline)
	defer cancel()
	rec := Record{
		HolderIdentity:       r.cfg.Identity,
		LeaseDurationSeconds: int(r.cfg.LeaseDuration / time.Second),
		AcquireTime:          metav1.NewTime(sent),
		RenewTime:            metav1.NewTime(sent),
		LeaderTransitions:    r.lease.Record.LeaderTransitions + 1,
	}
	notes := r.newTermNotes()
	var l Lease
	var err error
	switch {
	case r.view == viewKnown:
		l, err = r.cfg.Lock.Update(rctx, r.lease, rec, notes)
	case !r.seen: // first start
		rec.LeaderTransitions = 0
		l, err = r.cfg.Lock.Create(rctx, rec, notes)
	default:
		// A create carries no version: two candidates' creates both succeed
		// if the Lease is deleted between them. So put it back empty, with
		// transitions kept, and take it by an update when it expires.
		rec.HolderIdentity = ""
		rec.LeaderTransitions--
		rec.LeaseDurationSeconds = max(rec.LeaseDurationSeconds, 2) // 1 would read as a release
		if l, err = r.cfg.Lock.Create(rctx, rec, Notes{}); err == nil {
			r.log.Info("put the deleted lease back empty; taking it once it expires", "after", r.cfg.LeaseDuration)
			r.note(ctx, nil)
			r.observe(ctx, l, r.cfg.Clock.Now())
			return
		}
	}
	r.lead(ctx, l, err, sent, "acquire", "started leading")
}

// lead takes in the answer to a write, sent at sent, that makes this
// candidate the holder (an acquire, or a confirm of a resumed or handed-over
// term), and leads if it succeeded in time.
func (r *run) lead(ctx context.Context, l Lease, err error, sent time.Time, what, how string) {
	now := r.cfg.Clock.Now()
	switch {
	case err == nil:
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		r.needRead = true // someone else wrote first; look again at once
		return
	case apierrors.IsNotFound(err):
		r.gone(ctx, now, "")
		return
	default:
		r.note(ctx, fmt.Errorf("%s lease %s: %w", what, r.cfg.Lock.Describe(), err))
		r.notBefore = now.Add(r.cfg.RetryPeriod)
		return
	}
	r.note(ctx, nil)
	r.observe(ctx, l, now)
	if !now.Before(sent.Add(r.cfg.RenewDeadline)) {
		return // the answer came too late to lead on; followers may already count
	}
	r.leading, r.renewSentAt, r.lastAttempt, r.acquiredAt = true, sent, sent, sent
	r.update(func(s *State) { s.IsLeader, s.LeadUntil = true, r.renewDeadline() })
	r.log.Info(how, "leader", r.cfg.Identity, "transitions", l.Record.LeaderTransitions)
	r.changed()
	if cb := r.cfg.Callbacks.OnStartedLeading; cb != nil {
		// No renew runs while the callback does: its time is bounded by the
		// renew deadline, after which this candidate steps down anyway.
		cctx, cancel := r.withTimeout(ctx, r.renewDeadline().Sub(r.cfg.Clock.Now()))
		err := cb(cctx, r.State())
		cancel()
		if err != nil {
			r.resign(ctx, err)
			return
		}
	}
	r.backoff = r.cfg.RetryPeriod
}

// renew extends our Lease, re-reading it once on a conflict.
func (r *run) renew(ctx context.Context, now time.Time) {
	r.lastAttempt = now
	timeout := r.renewDeadline().Sub(now)
	if !r.leading { // keeping a withheld step-down's Lease: no deadline to lead by
		timeout = r.cfg.RetryPeriod
	}
	rctx, cancel := r.withTimeout(ctx, timeout)
	defer cancel()
	rec := r.lease.Record
	rec.HolderIdentity = r.cfg.Identity
	rec.LeaseDurationSeconds = int(r.cfg.LeaseDuration / time.Second)
	rec.RenewTime = metav1.NewTime(now)
	l, err := r.cfg.Lock.Update(rctx, r.lease, rec, r.holderNotes(r.lease))
	if apierrors.IsConflict(err) {
		var cur Lease
		if cur, err = r.cfg.Lock.Get(rctx); err == nil {
			r.observe(ctx, cur, r.cfg.Clock.Now())
			if !r.leading && !r.holdsLease() {
				return // observe saw another holder and stepped down
			}
			rec.AcquireTime, rec.LeaderTransitions = cur.Record.AcquireTime, cur.Record.LeaderTransitions
			l, err = r.cfg.Lock.Update(rctx, cur, rec, r.holderNotes(cur))
		}
	}
	// An answer the shutdown cut off leaves the write's outcome unknown.
	r.renewCut = err != nil && ctx.Err() != nil
	if err != nil {
		r.note(ctx, fmt.Errorf("renew lease %s: %w", r.cfg.Lock.Describe(), err))
		if apierrors.IsNotFound(err) {
			r.gone(ctx, r.cfg.Clock.Now(), "")
		}
		return
	}
	r.note(ctx, nil)
	r.renewSentAt = now
	if r.leading {
		r.update(func(s *State) { s.LeadUntil = r.renewDeadline() })
	}
	r.observe(ctx, l, r.cfg.Clock.Now())
	r.update(func(s *State) { s.RenewTime = l.Record.RenewTime.Time })
}

// stepDown ends our leadership: callbacks first, then, if release > 0, the
// Lease is handed back if it is still ours, trying for at most release,
// naming the standby, if there is one, as successor. Both run on a context
// that outlives ctx, each with its own bound, so that a shutdown signal during
// a step-down neither cuts the callback short nor makes followers wait
// LeaseDuration for a release that was never sent. A callback that fails
// withholds the rest (see withhold).
func (r *run) stepDown(ctx context.Context, reason string, release time.Duration) error {
	return r.stepDownTo(ctx, reason, release, "")
}

// stepDownTo is stepDown, handing the Lease to grantTo instead of releasing
// it when grantTo is set.
func (r *run) stepDownTo(ctx context.Context, reason string, release time.Duration, grantTo string) error {
	if !r.leading {
		return nil
	}
	r.leading = false
	r.update(func(s *State) { s.IsLeader, s.LeadUntil, s.LeadsUnhealthy = false, time.Time{}, false })
	r.log.Info("stopped leading", "reason", reason, "transitions", r.lease.Record.LeaderTransitions)
	err := r.runStopped(ctx)
	r.changed()
	if err != nil {
		return r.withhold(ctx, err, release, grantTo)
	}
	return r.handOn(ctx, release, grantTo)
}

// runStopped runs OnStoppedLeading, on a context of its own bound.
func (r *run) runStopped(ctx context.Context) error {
	cb := r.cfg.Callbacks.OnStoppedLeading
	if cb == nil {
		return nil
	}
	cctx, cancel := r.withTimeout(context.WithoutCancel(ctx), r.cfg.RetryPeriod)
	defer cancel()
	return cb(cctx, r.State())
}

// handOn is the second half of a step-down whose callback succeeded: the
// Lease is granted to grantTo, or released within release, or left alone.
func (r *run) handOn(ctx context.Context, release time.Duration, grantTo string) error {
	switch {
	case grantTo != "":
		return r.grant(context.WithoutCancel(ctx), grantTo)
	case release > 0:
		return r.release(context.WithoutCancel(ctx), release)
	}
	return nil
}

// withhold keeps a step-down whose callback failed from going on: the app
// may still act as leader, so the Lease stays ours, renewed without leading,
// until a retry of the callback succeeds.
func (r *run) withhold(ctx context.Context, err error, release time.Duration, grantTo string) error {
	now := r.cfg.Clock.Now()
	r.withheld = &withheldStepDown{release: release, grantTo: grantTo, retryAt: now.Add(r.cfg.RetryPeriod), backoff: r.cfg.RetryPeriod}
	r.update(func(s *State) { s.Withdrawing = err.Error() })
	r.log.Error("leadership could not be withdrawn: keeping the lease, renewed without leading, until it is; no release or handover meanwhile",
		"err", err, "retry_in", r.cfg.RetryPeriod, "holds_lease", r.holdsLease())
	err = fmt.Errorf("not stepped down, the lease is kept until leadership is withdrawn: %w", err)
	r.note(context.WithoutCancel(ctx), err)
	return err
}

// holdsLease reports whether a withheld step-down still has the Lease to
// keep: it is ours as far as this candidate knows.
func (r *run) holdsLease() bool {
	return r.withheld != nil && r.view == viewKnown && r.ours(r.lease)
}

// tickWithheld does what is due while a step-down is withheld: retry the
// callback, keep the Lease renewed while it is ours, else follow it by reads.
// It campaigns for nothing, and offers to be nobody's standby.
func (r *run) tickWithheld(ctx context.Context, now time.Time) {
	w := r.withheld
	r.pokeAt, r.standbyAt = time.Time{}, time.Time{}
	if !now.Before(w.retryAt) {
		err := r.runStopped(ctx)
		if err == nil {
			r.withheld = nil
			r.update(func(s *State) { s.Withdrawing = "" })
			r.log.Info("leadership withdrawn at last; stepping down")
			r.note(context.WithoutCancel(ctx), nil)
			_ = r.handOn(ctx, w.release, w.grantTo)
			r.notBefore = later(r.notBefore, r.cfg.Clock.Now().Add(r.cfg.RetryPeriod))
			return
		}
		w.backoff = min(2*w.backoff, r.cfg.RenewDeadline)
		w.retryAt = now.Add(w.backoff)
		r.update(func(s *State) { s.Withdrawing = err.Error() })
		r.log.Warn("leadership still not withdrawn; keeping the lease", "err", err, "retry_in", w.backoff, "holds_lease", r.holdsLease())
	}
	if r.holdsLease() {
		if !now.Before(r.lastAttempt.Add(r.cfg.RetryPeriod)) {
			r.renew(ctx, now)
		}
		return
	}
	if at, ok := r.readAt(); ok && !now.Before(at) {
		r.read(ctx, now)
	}
}

// drainWithheld keeps a withheld step-down going after Run's context ended:
// Run returns only once the callback succeeded and the step-down went on.
func (r *run) drainWithheld(ctx context.Context) {
	ctx = context.WithoutCancel(ctx)
	for r.withheld != nil {
		now := r.cfg.Clock.Now()
		r.tickWithheld(ctx, now)
		if r.withheld == nil {
			return
		}
		if wait := r.next(r.cfg.Clock.Now()).Sub(r.cfg.Clock.Now()); wait > 0 {
			<-r.cfg.Clock.After(wait)
		}
	}
}

// release hands the Lease back the way client-go's ReleaseOnCancel does, so
// that a watching follower, ours or client-go's, may take it at once. It
// names the standby as successor: our followers other than it then wait a
// RetryPeriod before they try, so one write, not one per follower, follows.
func (r *run) release(ctx context.Context, timeout time.Duration) error {
	if r.view != viewKnown {
		return nil
	}
	rctx, cancel := r.withTimeout(ctx, timeout)
	defer cancel()
	// The standby's answer to an offer is no proof that it took the Lease
	// (a reused pod IP, a catch-all server): the release on the offered
	// version is. It answers 409 once the standby wrote, and succeeds,
	// releasing as without an offer, if nobody did.
	tookOver := r.handOff(ctx, min(timeout/2, r.cfg.RetryPeriod/2))
	cur := r.lease
	for attempt := 0; attempt < 2; attempt++ {
		if !r.ours(cur) {
			return nil // no longer ours: nothing to release
		}
		var notes Notes
		if s := cur.Notes.Standby; s != r.cfg.Identity {
			notes.Successor = s
		}
		l, err := r.cfg.Lock.Update(rctx, cur, r.releaseRecord(cur), notes)
		if tookOver && apierrors.IsConflict(err) {
			return nil // the Lease moved on from the offered version: taken over
		}
		if err == nil {
			if tookOver {
				r.log.Warn("the standby answered the take-over offer but did not write the Lease; released it instead", "standby", cur.Notes.Standby)
			}
			r.log.Info("released lease", "transitions", l.Record.LeaderTransitions, "successor", notes.Successor)
			r.observe(ctx, l, r.cfg.Clock.Now())
			if notes.Successor != "" {
				r.nudge(notes.Successor, cur.Notes.StandbyAddress)
			}
			return nil
		}
		if !apierrors.IsConflict(err) {
			err = fmt.Errorf("release lease %s: %w", r.cfg.Lock.Describe(), err)
			r.note(ctx, err)
			return err
		}
		if cur, err = r.cfg.Lock.Get(rctx); err != nil {
			err = fmt.Errorf("release lease %s: %w", r.cfg.Lock.Describe(), err)
			r.note(ctx, err)
			return err
		}
	}
	return nil
}

// releaseRecord is the record that releases l, written as client-go's
// ReleaseOnCancel writes it: no holder, one second, transitions kept.
func (r *run) releaseRecord(l Lease) Record {
	now := metav1.NewTime(r.cfg.Clock.Now())
	return Record{LeaseDurationSeconds: 1, AcquireTime: now, RenewTime: now, LeaderTransitions: l.Record.LeaderTransitions}
}

// resign steps down on request and backs off before campaigning again.
func (r *run) resign(ctx context.Context, cause error) {
	r.note(ctx, fmt.Errorf("resigned: %w", cause))
	r.stepDown(ctx, "resigned: "+cause.Error(), r.cfg.RenewDeadline)
	r.notBefore = r.cfg.Clock.Now().Add(r.backoff)
	r.log.Warn("not campaigning during back-off", "for", r.backoff, "err", cause)
	r.backoff = min(2*r.backoff, r.cfg.LeaseDuration)
}

// noRelease steps down without touching the Lease, which is not ours.
const noRelease time.Duration = 0

// shutdown steps down and releases before Run returns; a standby withdraws
// its offer, so that no release names a candidate that is gone.
func (r *run) shutdown(ctx context.Context) {
	r.stopped = true
	defer r.answerGrant(nil, r.cfg.Clock.Now())
	switch {
	case r.leading:
		r.stepDown(ctx, "shutting down", r.cfg.RenewDeadline)
	case r.withheld == nil:
		r.withdraw(context.WithoutCancel(ctx))
	}
	if r.withheld != nil {
		r.withheld.release = max(r.withheld.release, r.cfg.RenewDeadline)
		r.drainWithheld(ctx)
	}
}

// setLeader publishes the observed record.
func (r *run) setLeader(rec Record) {
	s := r.State()
	if s.Leader == rec.HolderIdentity && s.Transitions == rec.LeaderTransitions {
		return
	}
	r.update(func(s *State) {
		s.Leader, s.Transitions = rec.HolderIdentity, rec.LeaderTransitions
		s.AcquireTime, s.RenewTime = rec.AcquireTime.Time, rec.RenewTime.Time
	})
	r.log.Info("leader observed", "leader", rec.HolderIdentity, "transitions", rec.LeaderTransitions)
	r.changed()
}

func (r *run) changed() {
	if cb := r.cfg.Callbacks.OnChange; cb != nil {
		cb(r.State())
	}
}

// note records err (nil: recovered) in State.LastError, logging each
// distinct error once. Errors of requests cut short by the end of ctx (a
// shutdown) are not errors of the election.
func (r *run) note(ctx context.Context, err error) {
	if err != nil && ctx.Err() != nil {
		return
	}
	if r.errs.Note(err) {
		last := r.errs.Last()
		r.update(func(s *State) { s.LastError = last })
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (e *Elector) update(f func(*State)) {
	e.mu.Lock()
	f(&e.state)
	e.mu.Unlock()
}

// withTimeout bounds a request on the elector's clock, so fake clocks govern
// request deadlines as well.
func (e *Elector) withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	t := e.cfg.Clock.AfterFunc(d, cancel)
	return ctx, func() { t.Stop(); cancel() }
}
