package election

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ErrNotLeader is returned by Handover on a candidate that does not lead.
var ErrNotLeader = errors.New("not the leader")

// ErrGrantRefused is returned by Handover(peer) when peer refused the
// Lease (see grantRefusal) and released it: the others take it at once.
var ErrGrantRefused = errors.New("the peer refused the lease")

// grantWait is a Handover(peer) that waits for peer's answer to the grant
// written at version: its confirm, or its refusal.
type grantWait struct {
	to, version string
	until       time.Time
	done        chan error
}

// awaitingGrant is handOver's result when the answer comes later, on done.
var awaitingGrant = errors.New("awaiting the peer's answer to the grant")

type handoverRequest struct {
	to     string
	retire bool
	done   chan error
}

// Handover steps down and hands the Lease on: to the standby, if one
// offered, when to is empty, else to the candidate whose identity is to. It
// returns once the Lease was released, or, with to, once to confirmed the
// term (within RenewDeadline), or with the error: ErrNotLeader (with the
// observed leader) when this candidate does not lead, ErrGrantRefused (with
// to's reason) when to refused. Run must be running.
func (e *Elector) Handover(ctx context.Context, to string) error {
	req := handoverRequest{to: to, done: make(chan error, 1)}
	return ask(ctx, e.handover, req, req.done)
}

// Retire tells the candidate that it is going away (its pod is being
// deleted): it campaigns no more, offers to be nobody's standby (withdrawing
// its offer), refuses every grant and take-over, and, if it leads, steps
// down and hands the Lease to the candidate whose identity is to, or
// releases it if to is empty. It returns once the Lease was handed over or
// released (it does not wait for to's confirm: a candidate whose pod goes
// is no one to answer to), or at once if it does not lead. Run keeps
// running, as a follower, until its context ends. Run must be running.
func (e *Elector) Retire(ctx context.Context, to string) error {
	req := handoverRequest{to: to, retire: true, done: make(chan error, 1)}
	return ask(ctx, e.handover, req, req.done)
}

// retire serves Retire on the election loop.
func (r *run) retire(ctx context.Context, to string) error {
	if r.stopped != "" {
		return nil
	}
	r.stopped = "is being retired: its pod is being deleted"
	r.e.update(func(s *State) { s.Retired = true })
	if !r.leading {
		if r.withheld == nil {
			r.withdraw(ctx)
		}
		return nil
	}
	if to == r.cfg.Identity {
		to = ""
	}
	reason := "retired: its pod is being deleted"
	if to != "" {
		reason += "; handing over to " + strconv.Quote(to)
	}
	return r.stepDownTo(ctx, reason, r.cfg.RenewDeadline, to)
}

// handOverRequest serves a Handover request on the election loop: at once,
// or once the peer answered its grant (see answerGrant).
func (r *run) handOverRequest(ctx context.Context, req handoverRequest) {
	if req.retire {
		req.done <- r.retire(ctx, req.to)
		return
	}
	err := r.handOver(ctx, req.to)
	if err != awaitingGrant { //nolint:errorlint // a sentinel of this file, never wrapped
		req.done <- err
		return
	}
	r.granted.done = req.done
}

// answerGrant answers a Handover(peer) waiting for peer, on l, the Lease
// as now observed, or at its deadline; nil l: Run ends.
func (r *run) answerGrant(l *Lease, now time.Time) {
	g := r.granted
	if g == nil {
		return
	}
	var err error
	switch {
	case l == nil:
		err = fmt.Errorf("handed lease %s to %q, but stopped before it confirmed", r.cfg.Lock.Describe(), g.to)
	case l.Version == g.version || !newer(l.Version, g.version):
		if now.Before(g.until) {
			return
		}
		err = fmt.Errorf("handed lease %s to %q, which did not confirm within %s: it may be gone; the others take the Lease once it expires",
			r.cfg.Lock.Describe(), g.to, r.cfg.RenewDeadline)
	case l.Record.HolderIdentity == g.to && l.Notes.HolderUID == "" && l.Notes.GrantedBy != "":
		if now.Before(g.until) {
			return // another write on the grant, such as a standby's offer
		}
		err = fmt.Errorf("handed lease %s to %q, which did not confirm within %s", r.cfg.Lock.Describe(), g.to, r.cfg.RenewDeadline)
	case l.Record.HolderIdentity == g.to:
		err = nil // confirmed
	case l.Notes.Refused != "":
		err = fmt.Errorf("%w: %s; it released the lease to the others", ErrGrantRefused, l.Notes.Refused)
	default:
		err = fmt.Errorf("handed lease %s to %q, but it is now held by %q", r.cfg.Lock.Describe(), g.to, l.Record.HolderIdentity)
	}
	if g.done != nil {
		g.done <- err
	}
	r.granted = nil
}

// handOver serves a Handover request on the election loop.
func (r *run) handOver(ctx context.Context, to string) error {
	if r.withheld != nil {
		return fmt.Errorf("%w: a step-down waits for leadership to be withdrawn: %s", ErrNotLeader, r.e.State().Withdrawing)
	}
	if !r.leading {
		return fmt.Errorf("%w (the leader is %q)", ErrNotLeader, r.e.State().Leader)
	}
	if to == r.cfg.Identity {
		return fmt.Errorf("cannot hand over to %q: it is this candidate, the leader", to)
	}
	if to == "" {
		err := r.stepDown(ctx, "resigned on request", r.cfg.RenewDeadline)
		r.notBefore = r.cfg.Clock.Now().Add(r.cfg.RetryPeriod)
		return err
	}
	if err := r.stepDownTo(ctx, fmt.Sprintf("handing over to %q on request", to), r.cfg.RenewDeadline, to); err != nil {
		return err
	}
	// Like a release on request: the others, not this candidate, take the
	// Lease should the peer refuse it.
	r.notBefore = r.cfg.Clock.Now().Add(r.cfg.RetryPeriod)
	if r.granted != nil {
		return awaitingGrant
	}
	return nil
}

// grant writes to as the holder of the Lease we just stepped down from.
func (r *run) grant(ctx context.Context, to string) error {
	what := r.about("hand") + " to " + strconv.Quote(to)
	if r.view != viewKnown || !r.ours(r.lease) {
		return fmt.Errorf("%s: it is no longer ours (holder %q)", what, r.lease.Record.HolderIdentity)
	}
	var from Lease // the version handed over, for its standby
	// A conflict is another write since the last renew (a standby's offer,
	// say): if the Lease is still ours, grant on what is there now.
	l, err := r.write(ctx, write{what: what, timeout: r.cfg.RenewDeadline, over: r.lease, conflict: writeAgain, ending: true,
		build: func(cur Lease) (Record, Notes, bool) {
			from = cur
			now := metav1.NewTime(r.cfg.Clock.Now())
			rec := cur.Record
			rec.HolderIdentity = to
			rec.LeaseDurationSeconds = int(r.cfg.LeaseDuration / time.Second)
			rec.AcquireTime, rec.RenewTime = now, now
			rec.LeaderTransitions++
			notes := Notes{GrantedBy: r.cfg.Identity}
			if s := cur.Notes.Standby; s != to {
				notes.Standby, notes.StandbyAddress = s, cur.Notes.StandbyAddress
			}
			return rec, notes, r.ours(cur)
		}})
	switch {
	case errors.Is(err, errNothingToWrite):
		return fmt.Errorf("%s: it is no longer ours (holder %q)", what, l.Record.HolderIdentity)
	case err != nil:
		return err
	}
	r.log.Info("handed the lease over", "to", to, "transitions", l.Record.LeaderTransitions)
	r.granted = &grantWait{to: to, version: l.Version, until: r.cfg.Clock.Now().Add(r.cfg.RenewDeadline)}
	if to == from.Notes.Standby {
		r.nudge(to, from.Notes.StandbyAddress)
	}
	return nil
}

// grantRefusal is why this candidate does not take a Lease handed to it,
// or "": a candidate whose app is unhealthy, that backs off, or that shuts
// down would not lead well, and would not offer to be standby either.
func (r *run) grantRefusal() string {
	switch {
	case r.stopped != "":
		return "it " + r.stopped
	case !r.healthy:
		return fmt.Sprintf("its app is unhealthy (%s)", r.healthReason)
	case r.cfg.Clock.Now().Before(r.notBefore):
		return "it backs off until " + r.notBefore.Format(time.RFC3339)
	}
	return ""
}
