package election

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

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
	// Log receives one line per leadership event; slog.Default() when nil.
	Log *slog.Logger
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
	// Address is where this candidate takes a take-over offer (see Offer),
	// such as POD_IP:HEALTH_PORT: written beside its standby offer as
	// Notes.StandbyAddress, for the leader's Callbacks.HandOff. Optional.
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
	// HandOff sends offer, signed, to the successor identity at address,
	// whose Elector.TakeOver should take it, and returns nil once the
	// successor answered that it took the Lease, else why not. It runs on
	// the election loop right after a step-down, before the release,
	// within ctx.
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
	// Retired is set once Retire was called: the candidate's pod is being
	// deleted, and it campaigns no more.
	Retired bool
}

// Elector runs one candidate's election. Create it with New, start it with Run.
type Elector struct {
	cfg      Config
	log      *slog.Logger
	resign   chan error
	handover chan handoverRequest
	health   chan struct{} // a new report is in reported
	takeOver chan takeOverRequest

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
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("lease", cfg.Lock.Describe(), "identity", cfg.Identity)
	return &Elector{cfg: cfg, log: log, resign: make(chan error, 1), handover: make(chan handoverRequest), takeOver: make(chan takeOverRequest),
		health: make(chan struct{}, 1), state: State{Identity: cfg.Identity, AppHealthy: !cfg.AppHealth}}, nil
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

	r := &run{e: e, cfg: e.cfg, log: e.log, errs: lasterr.New(e.log, "election error", "election recovered"),
		leaseView: leaseView{needRead: true},
		campaign:  campaign{backoff: e.cfg.RetryPeriod, healthy: !e.cfg.AppHealth},
		restart:   restart{fresh: true}}
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
		case <-wake:
		}
	}
}

const (
	viewUnknown view = iota // not read yet
	viewAbsent              // the Lease does not exist
	viewKnown               // lease holds the latest version we know
)

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

// ask sends req to the election loop on to and waits for its answer on
// done, or for ctx to end.
func ask[R any](ctx context.Context, to chan<- R, req R, done <-chan error) error {
	select {
	case to <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}
