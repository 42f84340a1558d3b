package election

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

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
	case r.stopped != "":
		return false // a retired candidate leads no more; its own old term expires
	case r.cfg.UID != "" && l.Notes.HolderUID == r.cfg.UID && r.resumable(l, fresh):
		r.confirm(ctx, l, "started leading: resumed this pod's term after a restart")
	case (fresh || r.sameTermAsFirst(l)) && l.Notes.HolderUID == "" && r.cfg.UID != "":
		r.log.Warn("the lease names this identity with no pod UID: it cannot be proven to be this pod's term from before a restart; releasing it", "pod_uid", r.cfg.UID)
		r.releaseWith(ctx, l)
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
	rec := l.Record
	rec.LeaseDurationSeconds = int(r.cfg.LeaseDuration / time.Second)
	rec.RenewTime = metav1.NewTime(sent)
	if rec.AcquireTime.IsZero() {
		rec.AcquireTime = rec.RenewTime
	}
	cur, err := r.write(ctx, write{what: r.about("confirm"), timeout: r.cfg.RenewDeadline, over: l, build: writes(rec, r.holderNotes(l))})
	r.lead(ctx, cur, err, sent, how)
}
