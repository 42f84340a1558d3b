package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// newTermRecord is the record of a term this candidate begins at sent,
// after the term of l.
func (r *run) newTermRecord(l Lease, sent time.Time) Record {
	return Record{
		HolderIdentity:       r.cfg.Identity,
		LeaseDurationSeconds: int(r.cfg.LeaseDuration / time.Second),
		AcquireTime:          metav1.NewTime(sent),
		RenewTime:            metav1.NewTime(sent),
		LeaderTransitions:    l.Record.LeaderTransitions + 1,
	}
}

// acquire tries to take the Lease, which is released or expired, or puts
// a missing Lease back.
func (r *run) acquire(ctx context.Context) {
	sent := r.cfg.Clock.Now()
	w := write{what: r.about("acquire"), timeout: r.cfg.RenewDeadline, over: r.lease,
		build: writes(r.newTermRecord(r.lease, sent), r.newTermNotes())}
	switch {
	case r.view == viewKnown:
	case !r.seen: // first start
		rec := r.newTermRecord(Lease{}, sent)
		rec.LeaderTransitions = 0
		w.create, w.build = true, writes(rec, r.newTermNotes())
	default:
		// A create carries no version: two candidates' creates both succeed
		// if the Lease is deleted between them. So put it back empty, with
		// transitions kept, and take it by an update when it expires.
		rec := r.newTermRecord(r.lease, sent)
		rec.HolderIdentity = ""
		rec.LeaderTransitions--
		rec.LeaseDurationSeconds = max(rec.LeaseDurationSeconds, 2) // 1 would read as a release
		w.what, w.create, w.build = r.about("put back"), true, writes(rec, Notes{})
		if _, err := r.write(ctx, w); err == nil {
			r.log.Info("put the deleted lease back empty; taking it once it expires", "after", r.cfg.LeaseDuration)
		} else if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) && !apierrors.IsNotFound(err) {
			r.notBefore = r.cfg.Clock.Now().Add(r.cfg.RetryPeriod)
		}
		return
	}
	l, err := r.write(ctx, w)
	r.lead(ctx, l, err, sent, "started leading")
}

// lead takes in the answer to a write, sent at sent, that makes this
// candidate the holder (an acquire, or a confirm of a resumed or handed-over
// term), and leads if it succeeded in time. The write took in the answer;
// an error that is no lost race makes this candidate wait a RetryPeriod.
func (r *run) lead(ctx context.Context, l Lease, err error, sent time.Time, how string) {
	now := r.cfg.Clock.Now()
	switch {
	case err == nil:
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) || apierrors.IsNotFound(err):
		return
	default:
		r.notBefore = now.Add(r.cfg.RetryPeriod)
		return
	}
	if !now.Before(sent.Add(r.cfg.RenewDeadline)) {
		return // the answer came too late to lead on; followers may already count
	}
	r.leading, r.renewSentAt, r.lastAttempt, r.acquiredAt = true, sent, sent, sent
	r.e.update(func(s *State) { s.IsLeader, s.LeadUntil = true, r.renewDeadline() })
	r.log.Info(how, "leader", r.cfg.Identity, "transitions", l.Record.LeaderTransitions)
	r.changed()
	if cb := r.cfg.Callbacks.OnStartedLeading; cb != nil {
		// No renew runs while the callback does: its time is bounded by the
		// renew deadline, after which this candidate steps down anyway.
		cctx, cancel := r.e.withTimeout(ctx, r.renewDeadline().Sub(r.cfg.Clock.Now()))
		err := cb(cctx, r.e.State())
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
	l, err := r.write(ctx, write{what: r.about("renew"), timeout: timeout, over: r.lease, conflict: writeAgain,
		build: func(cur Lease) (Record, Notes, bool) {
			rec := cur.Record
			rec.HolderIdentity = r.cfg.Identity
			rec.LeaseDurationSeconds = int(r.cfg.LeaseDuration / time.Second)
			rec.RenewTime = metav1.NewTime(now)
			// A re-read that saw another holder stepped down (observe).
			return rec, r.holderNotes(cur), r.leading || r.holdsLease()
		}})
	// An answer the shutdown cut off leaves the write's outcome unknown.
	r.renewCut = err != nil && ctx.Err() != nil
	if err != nil {
		return
	}
	r.renewSentAt = now
	if r.leading {
		r.e.update(func(s *State) { s.LeadUntil = r.renewDeadline() })
	}
	r.e.update(func(s *State) { s.RenewTime = l.Record.RenewTime.Time })
}

// stepDown ends our leadership: callbacks first, then, if release > 0, the
// Lease is offered to the standby, if one offered with an address, and
// released unless the standby took it, trying for at most release. Both run
// on a context that outlives ctx, each with its own bound, so that a
// shutdown signal during a step-down neither cuts the callback short nor
// makes followers wait LeaseDuration for a release that was never sent. A
// callback that fails withholds the rest (see withhold).
func (r *run) stepDown(ctx context.Context, reason string, release time.Duration) error {
	_, err := r.stepDownTo(ctx, reason, release, Successor{})
	return err
}

// stepDownTo is stepDown, offering the Lease to to instead of the standby
// when to is set. notTaken is why the Lease was released rather than taken
// over: nil when it was taken, or when nothing was handed on.
func (r *run) stepDownTo(ctx context.Context, reason string, release time.Duration, to Successor) (notTaken, err error) {
	if !r.leading {
		return nil, nil
	}
	r.leading = false
	r.e.update(func(s *State) { s.IsLeader, s.LeadUntil, s.LeadsUnhealthy = false, time.Time{}, false })
	r.log.Info("stopped leading", "reason", reason, "transitions", r.lease.Record.LeaderTransitions)
	err = r.runStopped(ctx)
	r.changed()
	if err != nil {
		return nil, r.withhold(ctx, err, release, to)
	}
	return r.handOn(ctx, release, to)
}

// runStopped runs OnStoppedLeading, on a context of its own bound.
func (r *run) runStopped(ctx context.Context) error {
	cb := r.cfg.Callbacks.OnStoppedLeading
	if cb == nil {
		return nil
	}
	cctx, cancel := r.e.withTimeout(context.WithoutCancel(ctx), r.cfg.RetryPeriod)
	defer cancel()
	return cb(cctx, r.e.State())
}

// handOn is the second half of a step-down whose callback succeeded: with
// release > 0 the Lease is handed to to (or the standby) and released
// unless taken, within release; else it is left alone.
func (r *run) handOn(ctx context.Context, release time.Duration, to Successor) (notTaken, err error) {
	if release <= 0 {
		return nil, nil
	}
	return r.release(context.WithoutCancel(ctx), release, to)
}

// release offers the Lease to to, or the standby, by a take-over (see
// handOff), and then hands it back the way client-go's ReleaseOnCancel
// does, so that a watching follower, ours or client-go's, may take it at
// once. The release is written on the offered version: once the successor
// took the Lease it answers 409, and that conflict is the proof of the
// take-over; the successor's answer alone never is (a reused pod IP, a
// catch-all server). notTaken is why the Lease was released.
func (r *run) release(ctx context.Context, timeout time.Duration, to Successor) (notTaken, err error) {
	if r.view != viewKnown {
		return nil, nil
	}
	notTaken = r.handOff(ctx, min(timeout/2, r.cfg.RetryPeriod/2), to)
	offered := notTaken == nil
	w := write{what: r.about("release"), timeout: timeout, over: r.lease, conflict: writeAgain, ending: true,
		build: func(cur Lease) (Record, Notes, bool) { return r.releaseRecord(cur), Notes{}, r.ours(cur) }}
	if offered {
		w.conflict = answered // a conflict is the proof of the take-over
	}
	l, err := r.write(ctx, w)
	switch {
	case errors.Is(err, errNothingToWrite), apierrors.IsNotFound(err):
		return notTaken, nil // no longer ours: nothing to release
	case offered && apierrors.IsConflict(err):
		return nil, nil // the Lease moved on from the offered version: taken over
	case err != nil:
		return notTaken, err
	}
	if offered {
		r.log.Warn("the successor answered the take-over offer but did not write the Lease; released it instead")
		notTaken = errors.New("it answered the offer but did not write the Lease")
	}
	r.log.Info("released lease", "transitions", l.Record.LeaderTransitions)
	return notTaken, nil
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
	r.stopped = "is shutting down"
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
