package election

import (
	"context"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// campaignAt returns when this candidate may write to take the Lease: a
// missing Lease at once (on first start as its holder, else as an empty
// record that is then taken like any other), a release at once, any other
// record once every holder seen may have stepped down.
//
// While the app is unhealthy every campaign waits a RetryPeriod more, so
// that a healthy candidate wins.
func (r *run) campaignAt() (time.Time, bool) {
	var at time.Time
	switch {
	case r.needRead || r.view == viewUnknown || r.stopped != "":
		return time.Time{}, false
	case r.view == viewAbsent:
		at = r.observedAt
	case isRelease(r.lease.Record):
		at = r.observedAt
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
	r.e.update(func(s *State) { s.LastObserved, s.HeldUntil = now, time.Time{} })
	if r.leading {
		r.stepDown(ctx, "the Lease was deleted", noRelease)
	}
	r.setLeader(Record{})
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
	r.e.update(func(s *State) { s.LastObserved, s.HeldUntil, s.Standby = now, heldUntil, l.Notes.Standby })
	if r.leading && !r.ours(l) {
		r.stepDown(ctx, fmt.Sprintf("the Lease is held by %q (pod uid %q)", l.Record.HolderIdentity, l.Notes.HolderUID), noRelease)
	}
	r.setLeader(l.Record)
}

// read gets the Lease.
func (r *run) read(ctx context.Context, now time.Time) {
	rctx, cancel := r.e.withTimeout(ctx, r.cfg.RenewDeadline)
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
