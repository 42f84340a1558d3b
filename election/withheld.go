package election

import (
	"context"
	"fmt"
	"time"
)

// withheldStepDown is a step-down that waits for OnStoppedLeading to
// succeed, and what it does then.
type withheldStepDown struct {
	release time.Duration // the release's bound; 0: no release
	to      Successor     // offer the Lease to this candidate, not the standby
	retryAt time.Time
	backoff time.Duration
}

// withhold keeps a step-down whose callback failed from going on: the app
// may still act as leader, so the Lease stays ours, renewed without leading,
// until a retry of the callback succeeds.
func (r *run) withhold(ctx context.Context, err error, release time.Duration, to Successor) error {
	now := r.cfg.Clock.Now()
	r.withheld = &withheldStepDown{release: release, to: to, retryAt: now.Add(r.cfg.RetryPeriod), backoff: r.cfg.RetryPeriod}
	r.e.update(func(s *State) { s.Withdrawing = err.Error() })
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
	r.standbyAt = time.Time{}
	if !now.Before(w.retryAt) {
		err := r.runStopped(ctx)
		if err == nil {
			r.withheld = nil
			r.e.update(func(s *State) { s.Withdrawing = "" })
			r.log.Info("leadership withdrawn at last; stepping down")
			r.note(context.WithoutCancel(ctx), nil)
			_, _ = r.handOn(ctx, w.release, w.to)
			r.notBefore = later(r.notBefore, r.cfg.Clock.Now().Add(r.cfg.RetryPeriod))
			return
		}
		w.backoff = min(2*w.backoff, r.cfg.RenewDeadline)
		w.retryAt = now.Add(w.backoff)
		r.e.update(func(s *State) { s.Withdrawing = err.Error() })
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
