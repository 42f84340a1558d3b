package election

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/leader-elector/leader-elector/internal/lasterr"
)

// view is what a candidate knows of the Lease's existence.
type view int

// run is the state of one Run; only its goroutine touches it. Its fields
// are grouped by what they are about, each group a struct of its own.
type run struct {
	e    *Elector // the public side: its channels, State and the app's health report
	cfg  Config
	log  *slog.Logger
	errs *lasterr.Tracker

	leaseView
	ownTerm
	campaign
	offers
	restart
	// offerRead is when an offer last made this candidate read the Lease
	// (see mayReadOnOffer).
	offerRead time.Time
	// withheld is a step-down whose OnStoppedLeading failed; nil: none.
	withheld *withheldStepDown
}

// leaseView is what a candidate knows of the Lease (view.go).
type leaseView struct {
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
}

// ownTerm is this candidate's own term (term.go).
type ownTerm struct {
	leading     bool
	acquiredAt  time.Time // send time of the write that began this term
	renewSentAt time.Time // send time of the last successful renew
	lastAttempt time.Time // send time of the last renew attempt
	renewCut    bool      // the last renew's answer was cut off by the end of Run's context
	stopped     string    // why this candidate campaigns no more (Run ended, Retire), or ""
	holderKey   string    // Config.Key's public half, as Notes.HolderKey
	// wroteOver and wrote are the versions of this candidate's last
	// successful write: the one it was written over, and the one it made
	// (an offer for wrote names wroteOver as its Base).
	wroteOver, wrote string
}

// campaign is when this candidate may campaign (view.go, health.go).
type campaign struct {
	notBefore    time.Time // no campaign before this (back-off)
	backoff      time.Duration
	healthy      bool // the app's health, true unless Config.AppHealth
	healthReason string
}

// offers is this candidate's offer to lead next (standby.go, takeover.go).
type offers struct {
	standbyAt time.Time // when to offer as standby; zero: not scheduled
	// offered is true once this candidate offered to be standby in the term
	// whose transitions are offeredIn.
	offered    bool
	offeredIn  int
	offerRaces int // offers that lost to another write
}

// restart is what a restarted candidate knows of its own term from before
// (restart.go).
type restart struct {
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
}

// tick does what is due at now.
func (r *run) tick(ctx context.Context, now time.Time) {
	r.e.update(func(s *State) { s.LastTick = now })
	if r.withheld != nil {
		r.tickWithheld(ctx, now)
		return
	}
	if r.leading {
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
	if at, ok := r.readAt(); ok {
		earliest(at)
	}
	if at, ok := r.campaignAt(); ok {
		earliest(at)
	}
	return t
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
		r.e.update(func(s *State) { s.Watching = true })
	case WatchLost:
		r.watching = false
		if now.After(r.lastRead) {
			r.lastRead = now // the watch was current until now: first poll one RetryPeriod later
		}
		r.e.update(func(s *State) { s.Watching = false })
		if ev.Err != nil && ev.Err.Error() != r.lastWatchErr {
			r.log.Warn("lease watch lost; polling until it is back", "every", r.cfg.RetryPeriod, "err", ev.Err)
		}
		r.lastWatchErr = ""
		if ev.Err != nil {
			r.lastWatchErr = ev.Err.Error()
		}
	}
}

// setLeader publishes the observed record.
func (r *run) setLeader(rec Record) {
	s := r.e.State()
	if s.Leader == rec.HolderIdentity && s.Transitions == rec.LeaderTransitions {
		return
	}
	r.e.update(func(s *State) {
		s.Leader, s.Transitions = rec.HolderIdentity, rec.LeaderTransitions
		s.AcquireTime, s.RenewTime = rec.AcquireTime.Time, rec.RenewTime.Time
	})
	r.log.Info("leader observed", "leader", rec.HolderIdentity, "transitions", rec.LeaderTransitions)
	r.changed()
}

func (r *run) changed() {
	if cb := r.cfg.Callbacks.OnChange; cb != nil {
		cb(r.e.State())
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
		r.e.update(func(s *State) { s.LastError = last })
	}
}

// later returns the later of a and b.
func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
