package election

import (
	"context"
	"errors"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// A write is one write of the Lease by the loop. Every write goes through
// run.write, as every write of client-go's elector goes through
// tryAcquireOrRenew or tryRelease.
type write struct {
	what    string        // what is written, for errors and logs: "renew lease ns/name"
	timeout time.Duration // bounds the write, its re-read and its second write
	over    Lease         // the version written over
	create  bool          // create the Lease instead of writing over a version
	// base, if set, is an earlier version that the holder's write of
	// over.Version was made over, and the last one this candidate saw: the
	// update is built from it (BaseUpdater).
	base string
	// build gives the record and notes to write over cur, or false if there
	// is nothing to write over cur (it is no longer ours, say).
	build    func(cur Lease) (Record, Notes, bool)
	conflict onConflict // what a conflict means
	// optional: the write is an offer whose failure is no failure of the
	// elector: it is logged at debug level, not noted in State.LastError.
	optional bool
	// ending: the write ends our term (a release). Its success
	// clears no error noted before, which may be why the term ends.
	ending bool
}

// onConflict is what a write does when another write came first.
type onConflict int

const (
	// readAgain: the loop reads the Lease before it acts on it again.
	readAgain onConflict = iota
	// writeAgain: read the Lease now, observe it, and write once more over
	// what is there; a second conflict is noted, and then read again.
	writeAgain
	// answered: the conflict answers the write (an offer lost the race, a
	// take-over happened), and the watch tells what changed.
	answered
)

// errNothingToWrite is write's answer when build declined to write.
var errNothingToWrite = errors.New("nothing to write")

// write sends w and takes in the answer: what the API returned is observed;
// a conflict does what w.conflict says; NotFound means the Lease is gone; any
// other error is noted. The error returned names w.what; errNothingToWrite comes with the
// version build declined.
func (r *run) write(ctx context.Context, w write) (Lease, error) {
	rctx, cancel := r.e.withTimeout(ctx, w.timeout)
	defer cancel()
	over := w.over
	l, err := r.send(rctx, over, w.create, w.base, w.build)
	if w.conflict == writeAgain && apierrors.IsConflict(err) {
		var cur Lease
		if cur, err = r.cfg.Lock.Get(rctx); err == nil {
			r.observe(ctx, cur, r.cfg.Clock.Now())
			over = cur
			l, err = r.send(rctx, cur, false, "", w.build)
		}
	}
	now := r.cfg.Clock.Now()
	switch {
	case errors.Is(err, errNothingToWrite):
		return l, err
	case err == nil:
		if !w.optional && !w.ending {
			r.note(ctx, nil)
		}
		r.wroteOver, r.wrote = over.Version, l.Version
		if w.create {
			r.wroteOver = ""
		}
		r.observe(ctx, l, now)
		return l, nil
	}
	err = fmt.Errorf("%s: %w", w.what, err)
	switch {
	case w.optional:
		r.log.Debug(w.what+" failed", "err", err)
	case w.conflict == answered && apierrors.IsConflict(err):
	case apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err):
		r.needRead = true
		if w.conflict == writeAgain { // lost twice: worth telling
			r.note(ctx, err)
		}
	case apierrors.IsNotFound(err):
		r.gone(ctx, now, "")
	default:
		r.note(ctx, err)
	}
	return l, err
}

// send writes what build makes of over, from base if set (BaseUpdater), or
// creates it.
func (r *run) send(ctx context.Context, over Lease, create bool, base string, build func(Lease) (Record, Notes, bool)) (Lease, error) {
	rec, notes, ok := build(over)
	switch {
	case !ok:
		return over, errNothingToWrite
	case create:
		return r.cfg.Lock.Create(ctx, rec, notes)
	}
	if bu, ok := r.cfg.Lock.(BaseUpdater); ok && base != "" {
		return bu.UpdateFromBase(ctx, base, over, rec, notes)
	}
	return r.cfg.Lock.Update(ctx, over, rec, notes)
}

// writes returns a build that writes rec and notes over any version.
func writes(rec Record, notes Notes) func(Lease) (Record, Notes, bool) {
	return func(Lease) (Record, Notes, bool) { return rec, notes, true }
}

// about names a write of the Lease: "renew lease ns/name".
func (r *run) about(verb string) string { return verb + " lease " + r.cfg.Lock.Describe() }
