package election

import (
	"context"
	"errors"
	"fmt"
	"strconv"
)

// ErrNotLeader is returned by Handover on a candidate that does not lead.
var ErrNotLeader = errors.New("not the leader")

// ErrNotTaken is returned by Handover(to) when to did not take the Lease
// (it refused the offer, or could not be reached): the Lease was released
// instead, and the others take it at once.
var ErrNotTaken = errors.New("the successor did not take the lease")

// ErrNoAddress is returned by Handover(to) when it does not know where to
// takes a take-over offer: nothing changed.
var ErrNoAddress = errors.New("where the successor takes a take-over offer is not known")

// Successor is a candidate that a step-down offers the Lease to: its
// identity, and where it takes a take-over offer (host:port, see Offer).
// The zero Successor means the standby, if one offered with an address.
type Successor struct {
	Identity string
	Address  string
}

type handoverRequest struct {
	to     Successor
	retire bool
	done   chan error
}

// Handover steps down and hands the Lease on: to the standby, if one
// offered, when to is zero, else to to, by a take-over offer (see Offer);
// when that candidate does not take it, the Lease is released. It returns
// once the Lease moved, or with the error: ErrNotLeader (with the observed
// leader) when this candidate does not lead, ErrNotTaken (with to's reason)
// when to did not take it and the Lease was released instead. A to with no
// Address is refused before anything changes, unless to is the standby:
// the standby's address, as it wrote it beside its offer, is used then,
// also in place of the Address given. Run must be running.
func (e *Elector) Handover(ctx context.Context, to Successor) error {
	req := handoverRequest{to: to, done: make(chan error, 1)}
	return ask(ctx, e.handover, req, req.done)
}

// Retire tells the candidate that it is going away (its pod is being
// deleted): it campaigns no more, offers to be nobody's standby (withdrawing
// its offer), refuses every take-over, and, if it leads, steps down and
// hands the Lease on as Handover does, releasing it when to (or, with a
// zero to, the standby) does not take it. It returns once the Lease moved,
// or at once if this candidate does not lead. Run keeps running, as a
// follower, until its context ends. Run must be running.
func (e *Elector) Retire(ctx context.Context, to Successor) error {
	req := handoverRequest{to: to, retire: true, done: make(chan error, 1)}
	return ask(ctx, e.handover, req, req.done)
}

// handOverRequest serves a Handover or Retire request on the election loop.
func (r *run) handOverRequest(ctx context.Context, req handoverRequest) {
	if req.retire {
		req.done <- r.retire(ctx, req.to)
		return
	}
	req.done <- r.handOver(ctx, req.to)
}

// retire serves Retire on the election loop.
func (r *run) retire(ctx context.Context, to Successor) error {
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
	if to.Identity == r.cfg.Identity {
		to = Successor{}
	}
	reason := "retired: its pod is being deleted"
	if to.Identity != "" {
		reason += "; handing over to " + strconv.Quote(to.Identity)
	}
	_, err := r.stepDownTo(ctx, reason, r.cfg.RenewDeadline, to)
	return err
}

// handOver serves a Handover request on the election loop.
func (r *run) handOver(ctx context.Context, to Successor) error {
	switch {
	case r.withheld != nil:
		return fmt.Errorf("%w: a step-down waits for leadership to be withdrawn: %s", ErrNotLeader, r.e.State().Withdrawing)
	case !r.leading:
		return fmt.Errorf("%w (the leader is %q)", ErrNotLeader, r.e.State().Leader)
	case to.Identity == r.cfg.Identity:
		return fmt.Errorf("cannot hand over to %q: it is this candidate, the leader", to.Identity)
	}
	// The standby's own word on where it takes offers beats a pod's IP.
	if n := r.lease.Notes; to.Identity != "" && n.Standby == to.Identity && n.StandbyAddress != "" {
		to.Address = n.StandbyAddress
	}
	if to.Identity != "" && to.Address == "" {
		return fmt.Errorf("cannot hand over to %q: %w (it is not the standby, and no pod of that name with an IP was found)", to.Identity, ErrNoAddress)
	}
	reason := "resigned on request"
	if to.Identity != "" {
		reason = fmt.Sprintf("handing over to %q on request", to.Identity)
	}
	notTaken, err := r.stepDownTo(ctx, reason, r.cfg.RenewDeadline, to)
	// The others, not this candidate, take the Lease if it was released.
	r.notBefore = r.cfg.Clock.Now().Add(r.cfg.RetryPeriod)
	switch {
	case err != nil:
		return err
	case to.Identity != "" && notTaken != nil:
		return fmt.Errorf("%w: %q: %v; released the lease to the others", ErrNotTaken, to.Identity, notTaken)
	}
	return nil
}
