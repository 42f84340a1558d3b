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
//  2. It sends the standby, at the address of its offer
//     (Callbacks.HandOff), an Offer: this Lease, from this holder, to that
//     standby, at the version the leader last saw, signed with the key
//     whose public half the leader writes beside its record
//     (Notes.HolderKey, from Config.Key).
//  3. The standby (Elector.TakeOver) checks the offer against its own view
//     of the Lease: the same version, held by From, whose key signed it,
//     naming itself. An offer the holder signed for a version the standby
//     has not seen yet (the leader's last renew is still on its way through
//     the watch) makes it read the Lease once and check again. It then
//     writes itself as holder, as an acquire does, on that version, and
//     leads once the write succeeded.
//  4. The leader takes the standby's answer: taken, and it writes nothing;
//     else, or with no answer within its bound, it releases as before.
//
// The version is the write's precondition, so the standby's write lands
// only on the very record the leader signed away, after it stopped leading;
// a replayed offer meets a later version and fails. Either of the two
// writes, the standby's and the leader's fallback release, may land first;
// the other then answers 409, so there is never more than one holder. The
// signature keeps anyone who can reach the standby's port from moving the
// Lease: an unsigned or wrongly signed offer is refused.

// Offer is what a leader signs away to its standby.
type Offer struct {
	// Lease is the lock's name (Lock.Describe), so that an offer for one
	// Lease cannot move another that the same candidates share.
	Lease string `json:"lease"`
	// From is the holder that offers, To the standby it offers to.
	From string `json:"from"`
	To   string `json:"to"`
	// Version is the Lease's version the leader last saw: the standby
	// writes on it and on nothing else.
	Version string `json:"version"`
}

// signedOffer is an Offer on the wire: the offer's JSON and its signature.
type signedOffer struct {
	Offer     json.RawMessage `json:"offer"`
	Signature []byte          `json:"signature"`
}

// ErrOfferRefused wraps every reason a standby refuses an offer.
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
	return r.checkOffer(ctx, wire, true)
}

// checkOffer takes a signed offer that holds against this candidate's view
// of the Lease. An offer signed by the holder this candidate knows, for a
// version newer than the one it knows, is most likely the leader's latest
// renew still on its way through the watch, which at hundreds of watchers
// takes tens of milliseconds: with mayRead, the Lease is read once and the
// offer checked again on what was read. An offer for an older version is
// refused without a read. Reads that offers cause are PokeInterval
// apart, as those that pokes cause, so a replayed offer cannot make a
// standby read more often than that.
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
	case newer(o.Version, l.Version) && mayRead && r.mayReadOnOffer():
		r.log.Debug("reading the lease on a take-over offer for a version this candidate has not seen",
			"offer_version", o.Version, "version", l.Version)
		r.read(ctx, r.cfg.Clock.Now())
		return r.checkOffer(ctx, wire, false)
	case o.Version != l.Version:
		return refuse("the offer is for version %s of the Lease, this candidate knows %s", o.Version, l.Version)
	}
	sent := r.cfg.Clock.Now()
	cur, err := r.write(ctx, write{what: r.about("take over"), timeout: r.cfg.RenewDeadline, over: l,
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
// counts it as the latest read an offer caused. Offers and pokes are
// limited apart: a nudge that follows a refused offer must not wait.
func (r *run) mayReadOnOffer() bool {
	now := r.cfg.Clock.Now()
	if !r.offerRead.IsZero() && now.Before(r.offerRead.Add(PokeInterval)) {
		return false
	}
	r.offerRead = now
	return true
}

// handOff offers the Lease, which this candidate just stopped leading, to
// its standby, and reports whether the standby took it. It sends nothing
// without a key, a HandOff callback, or a standby with an address.
func (r *run) handOff(ctx context.Context, timeout time.Duration) bool {
	offerable := func(cur Lease) bool {
		s, address := cur.Notes.Standby, cur.Notes.StandbyAddress
		return s != "" && s != r.cfg.Identity && address != "" && r.ours(cur)
	}
	if r.cfg.Key == nil || r.cfg.Callbacks.HandOff == nil || !offerable(r.lease) {
		return false
	}
	hctx, cancel := r.e.withTimeout(ctx, timeout)
	defer cancel()
	if r.renewCut {
		// The last renew's answer was cut off by the shutdown, so it may
		// have landed: an offer for the version before it would be refused.
		// One read tells.
		l, err := r.cfg.Lock.Get(hctx)
		if err != nil {
			r.log.Info("cannot read the lease to offer it to the standby; releasing it", "err", err)
			return false
		}
		r.renewCut = false
		r.observe(ctx, l, r.cfg.Clock.Now())
		if !offerable(r.lease) {
			return false
		}
	}
	cur := r.lease
	to, address := cur.Notes.Standby, cur.Notes.StandbyAddress
	wire, err := SignOffer(Offer{Lease: r.cfg.Lock.Describe(), From: r.cfg.Identity, To: to, Version: cur.Version}, r.cfg.Key)
	if err != nil {
		r.log.Warn("cannot offer the lease to the standby; releasing it", "standby", to, "err", err)
		return false
	}
	if err := r.cfg.Callbacks.HandOff(hctx, to, address, wire); err != nil {
		r.log.Info("the standby did not take the lease; releasing it", "standby", to, "err", err)
		return false
	}
	// The standby wrote itself as holder on cur's version: what we know is
	// stale, and the record naming us is no term of ours to resume.
	r.claimed = cur.Version
	r.log.Info("handed the lease to the standby", "standby", to, "transitions", cur.Record.LeaderTransitions+1)
	return true
}

// newTermNotes are the notes of a term this candidate begins: its pod UID
// and key, no standby yet.
func (r *run) newTermNotes() Notes {
	return Notes{HolderUID: r.cfg.UID, HolderKey: r.holderKey}
}
