package election

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// This file holds what moves leadership on purpose rather than by expiry:
// a standby that offers to lead next, a handover on request, the app's
// health, and a restarted candidate that finds its own term in the Lease.
//
// # Standby and successor
//
// Once per term, a healthy follower offers to lead next: it writes its
// identity as Notes.Standby, with the record unchanged, so that no
// follower's expiry clock restarts. Followers spread their offers over a
// RetryPeriod by a rank each computes from its identity and the term, and
// the first offer seen ends the others', so one write, rarely two, is sent
// per term. A standby whose app turns unhealthy, or that shuts down,
// withdraws its offer.
//
// A leader that steps down gracefully names the standby as successor in its
// release. The successor takes the Lease at once; every other follower of
// this package waits a RetryPeriod before it tries, so a handover costs one
// write however many followers watch. If the successor died since its
// offer, the others take the Lease after that RetryPeriod.
//
// # Nudge
//
// A standby with an Address (the sidecar's POD_IP:HEALTH_PORT) writes it
// beside its offer. A leader that released naming that standby as successor,
// or granted it the Lease, then calls Callbacks.Nudge with the address, and
// the sidecar sends the standby one request there, which calls its Poke: it
// reads the Lease at once, instead of waiting for its watch, which on a
// Lease with hundreds of watchers delivers the release many milliseconds
// later. The nudge carries nothing: the standby decides on the record it
// read, by the rules it applies to a watch event, so a nudge from anyone
// costs at most one read per PokeInterval and can make no candidate write
// what it would not have written on a watch event.
//
// # Handover on request
//
// Handover("") steps down and releases as above. Handover(peer) steps down
// and then writes peer as holder, with a fresh renew time and GrantedBy
// naming this candidate. Peer confirms the term by a renew with its own pod
// UID, and leads once that write succeeded; if peer is dead the Lease
// expires as any other. Every candidate leads only after a write of its own
// succeeded, so two candidates that share an identity cannot both lead on
// one grant: one confirm wins, the other's answers 409.
//
// # Restarts
//
// A candidate that does not lead and finds its identity as holder resumes
// the term, by a confirm as above, when the record's HolderUID is its own
// pod UID: the record was written by this pod's sidecar before it restarted,
// and no other process of this pod can lead. When it cannot prove that (the
// record carries no UID), it releases the Lease at once, once, on its first
// look, so that a peer takes over in milliseconds. A record naming its
// identity with another pod's UID is another pod's term: it waits for it to
// expire like any follower and says so in its log.

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
	to   string
	done chan error
}

// Handover steps down and hands the Lease on: to the standby, if one
// offered, when to is empty, else to the candidate whose identity is to. It
// returns once the Lease was released, or, with to, once to confirmed the
// term (within RenewDeadline), or with the error: ErrNotLeader (with the
// observed leader) when this candidate does not lead, ErrGrantRefused (with
// to's reason) when to refused. Run must be running.
func (e *Elector) Handover(ctx context.Context, to string) error {
	req := handoverRequest{to: to, done: make(chan error, 1)}
	select {
	case e.handover <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// handOverRequest serves a Handover request on the election loop: at once,
// or once the peer answered its grant (see answerGrant).
func (r *run) handOverRequest(ctx context.Context, req handoverRequest) {
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
		return fmt.Errorf("%w: a step-down waits for leadership to be withdrawn: %s", ErrNotLeader, r.State().Withdrawing)
	}
	if !r.leading {
		return fmt.Errorf("%w (the leader is %q)", ErrNotLeader, r.State().Leader)
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
	rctx, cancel := r.withTimeout(ctx, r.cfg.RenewDeadline)
	defer cancel()
	cur := r.lease
	if r.view != viewKnown || !r.ours(cur) {
		return fmt.Errorf("hand lease %s to %q: it is no longer ours (holder %q)", r.cfg.Lock.Describe(), to, cur.Record.HolderIdentity)
	}
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
	l, err := r.cfg.Lock.Update(rctx, cur, rec, notes)
	if apierrors.IsConflict(err) {
		// Another write landed since the last renew (a standby's offer,
		// say): if the Lease is still ours, grant on what is there now.
		var fresh Lease
		if fresh, err = r.cfg.Lock.Get(rctx); err == nil {
			r.observe(ctx, fresh, r.cfg.Clock.Now())
			if !r.ours(fresh) {
				return fmt.Errorf("hand lease %s to %q: it is no longer ours (holder %q)", r.cfg.Lock.Describe(), to, fresh.Record.HolderIdentity)
			}
			notes = Notes{GrantedBy: r.cfg.Identity}
			if s := fresh.Notes.Standby; s != to {
				notes.Standby, notes.StandbyAddress = s, fresh.Notes.StandbyAddress
			}
			rec.LeaderTransitions = fresh.Record.LeaderTransitions + 1
			cur = fresh
			l, err = r.cfg.Lock.Update(rctx, fresh, rec, notes)
		}
	}
	if err != nil {
		err = fmt.Errorf("hand lease %s to %q: %w", r.cfg.Lock.Describe(), to, err)
		r.note(ctx, err)
		if apierrors.IsConflict(err) {
			r.needRead = true
		}
		return err
	}
	r.log.Info("handed the lease over", "to", to, "transitions", l.Record.LeaderTransitions)
	r.granted = &grantWait{to: to, version: l.Version, until: r.cfg.Clock.Now().Add(r.cfg.RenewDeadline)}
	r.observe(ctx, l, r.cfg.Clock.Now())
	if to == cur.Notes.Standby {
		r.nudge(to, cur.Notes.StandbyAddress)
	}
	return nil
}

// ours reports whether l's holder is this candidate: its identity and,
// where both are known, its pod UID and this process's key. The key tells
// apart two processes that share one identity and pod UID (two electors in
// one pod, or a manifest that sets both literally): a leader whose term is
// renewed under another key steps down, instead of renewing on top of it.
func (r *run) ours(l Lease) bool {
	return l.Record.HolderIdentity == r.cfg.Identity &&
		(r.cfg.UID == "" || l.Notes.HolderUID == "" || l.Notes.HolderUID == r.cfg.UID) &&
		(r.holderKey == "" || l.Notes.HolderKey == "" || l.Notes.HolderKey == r.holderKey)
}

// resumable reports whether l, which names this identity and pod UID, is a
// term this process may resume: one it found at its start (the term of the
// process before a restart), or one written without or with its own key. A
// term renewed since under another key is a live twin's.
func (r *run) resumable(l Lease, fresh bool) bool {
	return fresh || r.sameTermAsFirst(l) || l.Notes.HolderKey == "" || l.Notes.HolderKey == r.holderKey
}

// holderNotes are the notes a renew of cur writes: our UID, the standby kept.
func (r *run) holderNotes(cur Lease) Notes {
	n := Notes{HolderUID: r.cfg.UID, HolderKey: r.holderKey, Standby: cur.Notes.Standby, StandbyAddress: cur.Notes.StandbyAddress}
	if n.Standby == r.cfg.Identity {
		n.Standby, n.StandbyAddress = "", ""
	}
	return n
}

// claimOwn acts on a record that names this candidate's identity while it
// does not lead: it confirms a term handed to it or its own from before a
// restart, or releases one it cannot prove is its own. It reports whether it
// wrote.
func (r *run) claimOwn(ctx context.Context) bool {
	fresh := r.fresh
	if r.view != viewUnknown && !r.needRead {
		if r.fresh {
			r.first = r.lease.Record
		}
		r.fresh = false
	}
	l := r.lease
	if r.leading || r.view != viewKnown || r.needRead || l.Record.HolderIdentity != r.cfg.Identity || r.claimed == l.Version {
		return false
	}
	r.claimed = l.Version
	switch {
	case l.Notes.GrantedBy != "" && l.Notes.HolderUID == "" && r.grantRefusal() != "":
		why := r.grantRefusal()
		r.log.Warn("refusing the lease handed over; releasing it", "by", l.Notes.GrantedBy, "why", why)
		r.releaseWith(ctx, l, Notes{Refused: r.cfg.Identity + ": " + why})
	case l.Notes.GrantedBy != "" && l.Notes.HolderUID == "":
		r.confirm(ctx, l, "started leading: handed over by "+strconv.Quote(l.Notes.GrantedBy))
	case r.cfg.UID != "" && l.Notes.HolderUID == r.cfg.UID && r.resumable(l, fresh):
		r.confirm(ctx, l, "started leading: resumed this pod's term after a restart")
	case (fresh || r.sameTermAsFirst(l)) && l.Notes.HolderUID == "" && r.cfg.UID != "":
		r.log.Warn("the lease names this identity with no pod UID: it cannot be proven to be this pod's term from before a restart; releasing it", "pod_uid", r.cfg.UID)
		r.releaseWith(ctx, l, Notes{})
	default:
		if !r.warned {
			r.warned = true
			switch {
			case l.Notes.HolderUID == "":
				r.log.Warn("the lease names this identity, but without POD_UID it cannot be proven to be this pod's term; waiting for it to end")
			case l.Notes.HolderUID == r.cfg.UID:
				r.log.Warn("the lease names this identity and pod UID but another process: two processes share one identity and pod UID; waiting for its term to end")
			default:
				r.log.Warn("the lease names this identity but another pod: two pods share one identity; waiting for its term to end",
					"holder_uid", l.Notes.HolderUID, "pod_uid", r.cfg.UID)
			}
		}
		return false
	}
	return true
}

// sameTermAsFirst says whether l is still the term of the first record
// looked at: the same holder, acquire and renew times (its notes may have
// changed).
func (r *run) sameTermAsFirst(l Lease) bool {
	f := r.first
	return f.HolderIdentity != "" && f.HolderIdentity == l.Record.HolderIdentity &&
		f.AcquireTime.Equal(&l.Record.AcquireTime) && f.RenewTime.Equal(&l.Record.RenewTime)
}

// confirm renews l, a term handed to us or our own, and leads if it wins.
func (r *run) confirm(ctx context.Context, l Lease, how string) {
	sent := r.cfg.Clock.Now()
	rctx, cancel := r.withTimeout(ctx, r.cfg.RenewDeadline)
	defer cancel()
	rec := l.Record
	rec.LeaseDurationSeconds = int(r.cfg.LeaseDuration / time.Second)
	rec.RenewTime = metav1.NewTime(sent)
	if rec.AcquireTime.IsZero() {
		rec.AcquireTime = rec.RenewTime
	}
	cur, err := r.cfg.Lock.Update(rctx, l, rec, r.holderNotes(l))
	r.lead(ctx, cur, err, sent, "confirm", how)
}

// grantRefusal is why this candidate does not take a Lease handed to it,
// or "": a candidate whose app is unhealthy, that backs off, or that shuts
// down would not lead well, and would not offer to be standby either.
func (r *run) grantRefusal() string {
	switch {
	case r.stopped:
		return "it is shutting down"
	case !r.healthy:
		return fmt.Sprintf("its app is unhealthy (%s)", r.healthReason)
	case r.cfg.Clock.Now().Before(r.notBefore):
		return "it backs off until " + r.notBefore.Format(time.RFC3339)
	}
	return ""
}

// releaseWith releases a record naming our identity that we do not take:
// one we cannot prove is ours, and that no live candidate of ours can be
// holding (it carries no pod UID, which every candidate with one writes),
// or one handed to us that we refuse (notes say why).
func (r *run) releaseWith(ctx context.Context, l Lease, notes Notes) {
	rctx, cancel := r.withTimeout(ctx, r.cfg.RenewDeadline)
	defer cancel()
	cur, err := r.cfg.Lock.Update(rctx, l, r.releaseRecord(l), notes)
	switch {
	case err == nil:
		r.note(ctx, nil)
		r.log.Info("released lease", "transitions", cur.Record.LeaderTransitions)
		r.observe(ctx, cur, r.cfg.Clock.Now())
	case apierrors.IsConflict(err):
		r.needRead = true
	default:
		r.note(ctx, fmt.Errorf("release lease %s: %w", r.cfg.Lock.Describe(), err))
	}
}

// standby offers this candidate as the next leader, once per term, or
// withdraws an offer that no longer holds.
func (r *run) standby(ctx context.Context, now time.Time) {
	l := r.lease
	if r.view != viewKnown || r.needRead || r.leading {
		r.standbyAt = time.Time{}
		return
	}
	if l.Notes.Standby == r.cfg.Identity {
		r.standbyAt = time.Time{}
		if !r.healthy || r.stopped {
			r.withdraw(ctx)
		}
		return
	}
	live := l.Record.HolderIdentity != "" && !r.ours(l) && now.Before(r.holderUntil)
	offered := r.offered && r.offeredIn == l.Record.LeaderTransitions
	// A candidate in back-off (it just resigned, or failed to lead) cannot
	// take the Lease at once, so it does not offer to.
	backingOff := now.Before(r.notBefore)
	if !live || offered || backingOff || l.Notes.Standby != "" || !r.healthy || r.stopped {
		r.standbyAt = time.Time{}
		return
	}
	if r.standbyAt.IsZero() {
		r.standbyAt = now.Add(time.Duration(rank(r.cfg.Identity, l.Record.LeaderTransitions, r.offerRaces) * float64(r.cfg.RetryPeriod)))
		return
	}
	if now.Before(r.standbyAt) {
		return
	}
	r.standbyAt = time.Time{}
	// Once per term: a leader that does not keep annotations (not this
	// package) would otherwise draw an offer from us after every renew.
	r.offered, r.offeredIn = true, l.Record.LeaderTransitions
	rctx, cancel := r.withTimeout(ctx, r.cfg.RetryPeriod)
	defer cancel()
	n := l.Notes
	n.Standby, n.StandbyAddress = r.cfg.Identity, r.cfg.Address
	cur, err := r.cfg.Lock.Update(rctx, l, l.Record, n)
	switch {
	case err == nil:
		r.log.Debug("offered to lead next", "leader", l.Record.HolderIdentity)
		r.observe(ctx, cur, r.cfg.Clock.Now())
	case apierrors.IsConflict(err):
		// Someone wrote first (a renew, another offer); its event tells
		// whether an offer is still wanted. The next one is placed anew,
		// so that it does not meet the leader's renews again and again.
		r.offered = false
		r.offerRaces++
	default:
		r.log.Debug("offer to lead next failed", "err", err)
		r.standbyAt = r.cfg.Clock.Now().Add(r.cfg.RetryPeriod)
	}
}

// withdraw removes this candidate's standby offer, if the Lease has one.
func (r *run) withdraw(ctx context.Context) {
	l := r.lease
	if r.view != viewKnown || l.Notes.Standby != r.cfg.Identity {
		return
	}
	rctx, cancel := r.withTimeout(ctx, r.cfg.RetryPeriod)
	defer cancel()
	n := l.Notes
	n.Standby, n.StandbyAddress = "", ""
	cur, err := r.cfg.Lock.Update(rctx, l, l.Record, n)
	if err != nil {
		r.log.Debug("withdrawing the offer to lead next failed", "err", err)
		return
	}
	r.offered = false // once healthy again, it may offer again in this term
	r.log.Info("withdrew the offer to lead next", "app_healthy", r.healthy)
	r.observe(ctx, cur, r.cfg.Clock.Now())
}

// rank places a candidate in [0, 1) for a term and a try, spread evenly
// over candidates, and anew for each term and try.
func rank(identity string, transitions, try int) float64 {
	h := fnv.New64a()
	h.Write([]byte(identity))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(transitions)))
	h.Write([]byte{0})
	h.Write([]byte(strconv.Itoa(try)))
	return float64(h.Sum64()>>11) / (1 << 53)
}

// appHealth is one report of the app's health.
type appHealth struct {
	healthy bool
	reason  string
}

// ReportAppHealth tells the candidate its app's health, when Config.AppHealth
// is set; it does not block. Only the latest report counts.
func (e *Elector) ReportAppHealth(healthy bool, reason string) {
	e.reportMu.Lock()
	e.reported = appHealth{healthy: healthy, reason: reason}
	e.reportMu.Unlock()
	select {
	case e.health <- struct{}{}:
	default:
	}
}

// takeHealth applies the latest health report.
func (r *run) takeHealth() {
	if !r.cfg.AppHealth {
		return
	}
	r.reportMu.Lock()
	h := r.reported
	r.reportMu.Unlock()
	r.healthy, r.healthReason = h.healthy, h.reason
	r.update(func(s *State) {
		s.AppHealthy, s.AppHealth = h.healthy, h.reason
		if h.healthy {
			s.LeadsUnhealthy = false
		}
	})
}

// checkHealth hands over from a leader whose app is unhealthy, once it led
// for MinTerm, to the standby; with no standby it keeps leading and says so.
func (r *run) checkHealth(ctx context.Context, now time.Time) {
	if !r.leading || r.healthy || now.Before(r.acquiredAt.Add(r.cfg.MinTerm)) {
		return
	}
	standby := r.lease.Notes.Standby
	if standby == "" || standby == r.cfg.Identity {
		if !r.State().LeadsUnhealthy {
			r.log.Warn("the app is unhealthy, but no healthy peer offered to lead: keeps leading", "app", r.healthReason)
			r.update(func(s *State) { s.LeadsUnhealthy = true })
		}
		return
	}
	r.stepDown(ctx, fmt.Sprintf("the app is unhealthy (%s); %q takes over", r.healthReason, standby), r.cfg.RenewDeadline)
}
