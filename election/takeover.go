package election

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// # Take-over
//
// A release is one write, and the successor's acquire is a second; on a
// Lease with hundreds of watchers each write wakes every one of them, and
// the successor's read and write queue behind that herd. A take-over needs
// one write, made by the successor before any herd:
//
//  1. The leader steps down (callbacks first, as always).
//  2. It sends its successor (Successor: the one Handover or Retire names,
//     else the standby, at the address of its offer), by Callbacks.HandOff,
//     an Offer: this Lease, from this holder, to that successor, at the
//     version the leader last saw, signed with the key whose public half
//     the leader writes beside its record (Notes.HolderKey, from
//     Config.Key).
//  3. The successor (Elector.TakeOver) checks the offer against its own
//     view of the Lease: the same version, held by From, whose key signed
//     it, naming itself. An offer the holder signed for a version the
//     successor has not seen yet (the leader's last renew is still on its
//     way through the watch) is checked against the version that renew was
//     written over (Offer.Base), when that is the one the successor knows;
//     otherwise it makes the successor read the Lease once and check again.
//     It then writes itself as holder, as an acquire does, on that version,
//     and leads once the write succeeded.
//  4. The leader then releases on the offered version, taken or not: once
//     the successor wrote, the release answers 409, which is the proof of
//     the take-over; if nobody wrote, the Lease is released as without an
//     offer, so an answer that lies costs no leaderless LeaseDuration.
//
// The version is the write's precondition, so the successor's write lands
// only on the record the leader signed away, after it stopped leading, or on
// a later version of the same term, which only notes changed (a follower's
// standby offer that the leader had not seen yet: the leader, stopped,
// renews no more); a replayed offer meets a later term and fails. Either of the two
// writes, the successor's and the leader's release, may land first; the
// other then answers 409, so there is never more than one holder. The
// signature keeps anyone who can reach the successor's port from moving
// the Lease: an unsigned or wrongly signed offer is refused.

// Offer is what a leader signs away to its successor.
type Offer struct {
	// Lease is the lock's name (Lock.Describe), so that an offer for one
	// Lease cannot move another that the same candidates share.
	Lease string `json:"lease"`
	// From is the holder that offers, To the standby it offers to.
	From string `json:"from"`
	To   string `json:"to"`
	// Version is the Lease's version the leader last saw, and Term its
	// LeaderTransitions: the term the leader stopped leading before it
	// signed. The successor writes on that version, or on a later one of
	// the same term (only notes, such as a standby's offer, were written
	// since: the leader renews no more), and on nothing else.
	Version string `json:"version"`
	Term    int    `json:"term"`
	// Base is the version that the holder's own write of Version (its last
	// renew) was made over; empty when Version is not the holder's write.
	// A successor whose watch has not delivered Version yet but knows Base
	// takes the offer without a read: between the two, only the holder's
	// record and notes changed, and its write replaces both (BaseUpdater).
	// A deletion that comes during a renew meets this; under load the read
	// took 100 ms here.
	Base string `json:"base,omitempty"`
}

// signedOffer is an Offer on the wire: the offer's JSON and its signature.
type signedOffer struct {
	Offer     json.RawMessage `json:"offer"`
	Signature []byte          `json:"signature"`
}

// OfferReadInterval is the least time between two reads of the Lease that
// take-over offers cause.
const OfferReadInterval = 100 * time.Millisecond

// ErrOfferRefused wraps every reason a candidate refuses an offer.
var ErrOfferRefused = errors.New("take-over offer refused")

// HolderKey is how a public key is written in Notes.HolderKey.
func HolderKey(pub ed25519.PublicKey) string { return base64.StdEncoding.EncodeToString(pub) }

// SignOffer returns the wire form of o, signed with key: what
// Callbacks.HandOff carries and Elector.TakeOver takes.
func SignOffer(o Offer, key ed25519.PrivateKey) ([]byte, error) {
	body, err := json.Marshal(o)
	if err != nil {
		return nil, fmt.Errorf("encode take-over offer: %w", err)
	}
	return json.Marshal(signedOffer{Offer: body, Signature: ed25519.Sign(key, body)})
}

// peekOffer decodes a signed offer without checking its signature: only to
// learn which version it claims, never to act on.
func peekOffer(wire []byte) (Offer, error) {
	var s signedOffer
	var o Offer
	if err := json.Unmarshal(wire, &s); err != nil {
		return o, err
	}
	return o, json.Unmarshal(s.Offer, &o)
}

// openOffer decodes a signed offer and checks its signature against
// holderKey (as written in Notes.HolderKey).
func openOffer(wire []byte, holderKey string) (Offer, error) {
	var s signedOffer
	if err := json.Unmarshal(wire, &s); err != nil {
		return Offer{}, fmt.Errorf("%w: not a signed offer: %v", ErrOfferRefused, err)
	}
	pub, err := base64.StdEncoding.DecodeString(holderKey)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return Offer{}, fmt.Errorf("%w: the Lease carries no usable holder key (%q)", ErrOfferRefused, holderKey)
	}
	if !ed25519.Verify(pub, s.Offer, s.Signature) {
		return Offer{}, fmt.Errorf("%w: the signature is not the holder's", ErrOfferRefused)
	}
	var o Offer
	if err := json.Unmarshal(s.Offer, &o); err != nil {
		return Offer{}, fmt.Errorf("%w: malformed offer: %v", ErrOfferRefused, err)
	}
	return o, nil
}

type takeOverRequest struct {
	offer []byte
	done  chan error
}

// TakeOver takes the Lease on a signed offer of its holder (see Offer); it
// returns nil once this candidate leads, else why not, wrapping
// ErrOfferRefused when the offer does not hold. Run must be running.
func (e *Elector) TakeOver(ctx context.Context, offer []byte) error {
	req := takeOverRequest{offer: offer, done: make(chan error, 1)}
	return ask(ctx, e.takeOver, req, req.done)
}

// takeOffer serves a TakeOver request on the election loop.
func (r *run) takeOffer(ctx context.Context, wire []byte) error {
	r.log.Debug("take-over offer received")
	return r.checkOffer(ctx, wire, true)
}

// checkOffer takes a signed offer that holds against this candidate's view
// of the Lease. An offer for a version newer than the one it knows is most
// likely the leader's latest renew (or, from a leader that just took the
// Lease, its first term) still on its way through the watch, which at
// hundreds of watchers takes tens of milliseconds: with mayRead, the Lease
// is read once and the offer checked again, signature and all, on what was
// read. An offer for an older version is taken when it names the term of
// the version this candidate knows (only notes changed since, such as a
// standby's offer), and refused without a read otherwise. Reads that offers
// cause are OfferReadInterval apart, so a replayed offer cannot make a
// candidate read more often than that.
func (r *run) checkOffer(ctx context.Context, wire []byte, mayRead bool) error {
	refuse := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrOfferRefused, fmt.Sprintf(format, args...))
	}
	l := r.lease
	switch {
	case r.leading:
		return refuse("this candidate leads already")
	case r.stopped != "":
		return refuse("this candidate %s", r.stopped)
	case r.withheld != nil:
		return refuse("this candidate's own step-down waits for its leadership to be withdrawn")
	case !r.healthy:
		return refuse("the app is unhealthy (%s)", r.healthReason)
	case r.cfg.Clock.Now().Before(r.notBefore):
		return refuse("this candidate backs off until %s", r.notBefore.Format(time.RFC3339Nano))
	case r.view != viewKnown || r.needRead:
		return refuse("this candidate does not know the Lease's current version")
	}
	// An offer for a version newer than this candidate knows is most
	// likely the holder's: its last renew, or its first term, is still on
	// its way through the watch. A renew over the version this candidate
	// knows, of the same term, is checked on what it knows and written over
	// from it; anything else costs one read, then a check on what was read.
	base := ""
	if o, err := peekOffer(wire); err == nil && newer(o.Version, l.Version) {
		switch {
		case o.Base == l.Version && o.Term == l.Record.LeaderTransitions && o.From == l.Record.HolderIdentity:
			base = l.Version // the signature is checked below, against l's holder key
		case mayRead && r.mayReadOnOffer():
			r.log.Debug("reading the lease on a take-over offer for a version this candidate has not seen",
				"offer_version", o.Version, "version", l.Version)
			r.read(ctx, r.cfg.Clock.Now())
			return r.checkOffer(ctx, wire, false)
		}
	}
	o, err := openOffer(wire, l.Notes.HolderKey)
	if err != nil {
		return err
	}
	switch {
	case o.Lease != r.cfg.Lock.Describe():
		return refuse("the offer is for lease %q, not %q", o.Lease, r.cfg.Lock.Describe())
	case o.To != r.cfg.Identity:
		return refuse("the offer is for %q, not %q", o.To, r.cfg.Identity)
	case o.From != l.Record.HolderIdentity:
		return refuse("the offer is from %q, but the holder is %q", o.From, l.Record.HolderIdentity)
	case o.Version != l.Version && base == "" && !(newer(l.Version, o.Version) && o.Term == l.Record.LeaderTransitions):
		return refuse("the offer is for version %s (term %d) of the Lease, this candidate knows %s (term %d)",
			o.Version, o.Term, l.Version, l.Record.LeaderTransitions)
	}
	over := l
	if base != "" {
		over.Version = o.Version
	}
	sent := r.cfg.Clock.Now()
	r.log.Debug("taking the lease over", "from", o.From, "version", over.Version, "base", base)
	cur, err := r.write(ctx, write{what: r.about("take over"), timeout: r.cfg.RenewDeadline, over: over, base: base,
		build: writes(r.newTermRecord(l, sent), r.newTermNotes())})
	r.lead(ctx, cur, err, sent, "started leading: taken over from "+strconv.Quote(o.From))
	switch {
	case r.leading:
		return nil
	case apierrors.IsConflict(err):
		return refuse("the Lease changed since version %s", o.Version)
	case err != nil:
		return err
	}
	return fmt.Errorf("take over lease %s: the write succeeded too late to lead on", r.cfg.Lock.Describe())
}

// mayReadOnOffer reports whether an offer may cause a read now, and if so
// counts it as the latest read an offer caused.
func (r *run) mayReadOnOffer() bool {
	now := r.cfg.Clock.Now()
	if !r.offerRead.IsZero() && now.Before(r.offerRead.Add(OfferReadInterval)) {
		return false
	}
	r.offerRead = now
	return true
}

// errNoSuccessor is handOff's answer when there was no one to offer to.
var errNoSuccessor = errors.New("no successor with an address to offer the lease to")

// handOff offers the Lease, which this candidate just stopped leading, to
// to, or with a zero to to the standby, and returns nil once that
// candidate answered that it took it, else why not. It sends nothing
// without a key, a HandOff callback, or a successor with an address.
func (r *run) handOff(ctx context.Context, timeout time.Duration, to Successor) error {
	successor := func(cur Lease) Successor {
		if to.Identity != "" {
			return to
		}
		return Successor{Identity: cur.Notes.Standby, Address: cur.Notes.StandbyAddress}
	}
	offerable := func(cur Lease) bool {
		s := successor(cur)
		return s.Identity != "" && s.Identity != r.cfg.Identity && s.Address != "" && r.ours(cur)
	}
	if r.cfg.Key == nil || r.cfg.Callbacks.HandOff == nil || !offerable(r.lease) {
		return errNoSuccessor
	}
	hctx, cancel := r.e.withTimeout(ctx, timeout)
	defer cancel()
	if r.renewCut {
		// The last renew's answer was cut off by the shutdown, so it may
		// have landed: an offer for the version before it would be refused.
		// One read tells.
		l, err := r.cfg.Lock.Get(hctx)
		if err != nil {
			r.log.Info("cannot read the lease to offer it to the successor; releasing it", "err", err)
			return fmt.Errorf("read the lease to offer it: %w", err)
		}
		r.renewCut = false
		r.observe(ctx, l, r.cfg.Clock.Now())
		if !offerable(r.lease) {
			return errNoSuccessor
		}
	}
	cur := r.lease
	s := successor(cur)
	o := Offer{Lease: r.cfg.Lock.Describe(), From: r.cfg.Identity, To: s.Identity, Version: cur.Version, Term: cur.Record.LeaderTransitions}
	if r.wrote == cur.Version {
		o.Base = r.wroteOver
	}
	wire, err := SignOffer(o, r.cfg.Key)
	if err != nil {
		r.log.Warn("cannot offer the lease to the successor; releasing it", "successor", s.Identity, "err", err)
		return err
	}
	r.log.Debug("offering the lease", "successor", s.Identity, "address", s.Address, "version", o.Version, "base", o.Base)
	if err := r.cfg.Callbacks.HandOff(hctx, s.Identity, s.Address, wire); err != nil {
		r.log.Info("the successor did not take the lease; releasing it", "successor", s.Identity, "err", err)
		return err
	}
	// The successor wrote itself as holder on cur's version: what we know
	// is stale, and the record naming us is no term of ours to resume.
	r.claimed = cur.Version
	r.log.Info("handed the lease over", "successor", s.Identity, "transitions", cur.Record.LeaderTransitions+1)
	return nil
}

// newTermNotes are the notes of a term this candidate begins: its pod UID
// and key, no standby yet.
func (r *run) newTermNotes() Notes {
	return Notes{HolderUID: r.cfg.UID, HolderKey: r.holderKey}
}
