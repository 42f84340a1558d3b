package election

import (
	"context"
	"hash/fnv"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// releaseWith releases a record naming our identity that we do not take:
// one we cannot prove is ours, and that no live candidate of ours can be
// holding (it carries no pod UID, which every candidate with one writes).
func (r *run) releaseWith(ctx context.Context, l Lease) {
	cur, err := r.write(ctx, write{what: r.about("release"), timeout: r.cfg.RenewDeadline, over: l, build: writes(r.releaseRecord(l), Notes{})})
	if err == nil {
		r.log.Info("released lease", "transitions", cur.Record.LeaderTransitions)
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
		if !r.healthy || r.stopped != "" {
			r.withdraw(ctx)
		}
		return
	}
	live := l.Record.HolderIdentity != "" && !r.ours(l) && now.Before(r.holderUntil)
	offered := r.offered && r.offeredIn == l.Record.LeaderTransitions
	// A candidate in back-off (it just resigned, or failed to lead) cannot
	// take the Lease at once, so it does not offer to.
	backingOff := now.Before(r.notBefore)
	if !live || offered || backingOff || l.Notes.Standby != "" || !r.healthy || r.stopped != "" {
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
	n := l.Notes
	n.Standby, n.StandbyAddress = r.cfg.Identity, r.cfg.Address
	_, err := r.write(ctx, write{what: "offer to lead next", timeout: r.cfg.RetryPeriod, over: l,
		build: writes(l.Record, n), conflict: answered, optional: true})
	switch {
	case err == nil:
		r.log.Debug("offered to lead next", "leader", l.Record.HolderIdentity)
	case apierrors.IsConflict(err):
		// Someone wrote first (a renew, another offer); its event tells
		// whether an offer is still wanted. The next one is placed anew,
		// so that it does not meet the leader's renews again and again.
		r.offered = false
		r.offerRaces++
	default:
		r.standbyAt = r.cfg.Clock.Now().Add(r.cfg.RetryPeriod)
	}
}

// withdraw removes this candidate's standby offer, if the Lease has one.
func (r *run) withdraw(ctx context.Context) {
	l := r.lease
	if r.view != viewKnown || l.Notes.Standby != r.cfg.Identity {
		return
	}
	n := l.Notes
	n.Standby, n.StandbyAddress = "", ""
	if _, err := r.write(ctx, write{what: "withdraw the offer to lead next", timeout: r.cfg.RetryPeriod, over: l,
		build: writes(l.Record, n), conflict: answered, optional: true}); err != nil {
		return
	}
	r.offered = false // once healthy again, it may offer again in this term
	r.log.Info("withdrew the offer to lead next", "app_healthy", r.healthy)
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
