// Package takeover carries a stepping-down leader's signed take-over offer
// (election.Offer) to its successor, on the successor's health port:
//
//	POST /v1/take-over   the offer, answered by the successor's
//	                     TakeOverHandler through election.Elector.TakeOver,
//	                     which checks the signature against the holder key in
//	                     the Lease and writes the successor as holder.
//
// 200 means taken; anything else, or no answer, and the leader releases the
// Lease. The successor is the one the leader chose from its pod informer
// (internal/succession), the peer named by `resign --to`, or the standby,
// at the address it wrote beside its offer (election.Notes.StandbyAddress).
package takeover

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/leader-elector/leader-elector/election"
)

// Path is the endpoint on the health port that takes an offer.
const Path = "/v1/take-over"

// maxOffer bounds the body of a take-over request; an offer is a few
// hundred bytes.
const maxOffer = 4 << 10

// DefaultDialTimeout bounds the connection to a successor: a peer that is
// not there must not hold the step-down long.
const DefaultDialTimeout = 100 * time.Millisecond

// Taker is what an offer asks of the election: election.Elector.TakeOver.
type Taker interface {
	// TakeOver takes the Lease on a signed offer; errors wrapping
	// election.ErrOfferRefused say the offer does not hold.
	TakeOver(ctx context.Context, offer []byte) error
}

// Handler answers POST Path: 200 OK once this candidate took the Lease and
// leads; 409 Conflict, with the reason, when the offer does not hold (bad
// signature, another version, not for this candidate); 503 Service
// Unavailable when the write failed or did not finish while the leader
// waited; 413 for a body too large to be an offer.
func Handler(t Taker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		offer, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxOffer))
		if err != nil {
			http.Error(w, "read the offer: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		switch err := t.TakeOver(r.Context(), offer); {
		case err == nil:
			w.WriteHeader(http.StatusOK)
		case errors.Is(err, election.ErrOfferRefused):
			http.Error(w, err.Error(), http.StatusConflict)
		default:
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
}

// Sender sends offers. Create it with NewSender.
type Sender struct {
	client *http.Client // no timeout of its own: each request has a context
}

// Options configure a Sender. The zero value is usable.
type Options struct {
	// DialTimeout bounds the connection; DefaultDialTimeout when zero.
	DialTimeout time.Duration
	// Transport sends the requests; a transport of its own, with no proxy
	// and no kept-alive connections, when nil.
	Transport http.RoundTripper
}

// NewSender returns a Sender.
func NewSender(o Options) *Sender {
	if o.DialTimeout <= 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.Transport == nil {
		// Pod to pod: no proxy; one request per handover: no idle pool.
		o.Transport = &http.Transport{Proxy: nil, DisableKeepAlives: true,
			DialContext: (&net.Dialer{Timeout: o.DialTimeout}).DialContext}
	}
	return &Sender{client: &http.Client{Transport: o.Transport}}
}

// HandOff sends offer to the successor identity at address and waits,
// within ctx, for its answer: nil when it took the Lease. It plugs into
// election.Callbacks.HandOff.
func (s *Sender) HandOff(ctx context.Context, identity, address string, offer []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+address+Path, bytes.NewReader(offer))
	if err != nil {
		return fmt.Errorf("offer the lease to %s at %s: %w", identity, address, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("offer the lease to %s at %s: %w", identity, address, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		why, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("offer the lease to %s at %s: %s: %s", identity, address, resp.Status, bytes.TrimSpace(why))
	}
	return nil
}

// Address is where this replica takes offers: podIP with the port of the
// health listener, listen (such as ":8080" or "0.0.0.0:4041"). It is empty
// when podIP is, or when listen binds one address other than podIP (such as
// 127.0.0.1:8080), which peers cannot reach.
func Address(podIP, listen string) string {
	if podIP == "" {
		return ""
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return ""
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 {
		return ""
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) && host != podIP {
		return ""
	}
	return net.JoinHostPort(podIP, port)
}

// PeerAddress is where a peer pod with IP peerIP takes offers, given own,
// this replica's Address: the same port, as the peers run the same
// configuration. Empty when own is (this replica takes no offers, so it
// assumes its peers do not either) or peerIP is.
func PeerAddress(own, peerIP string) string {
	_, port, err := net.SplitHostPort(own)
	if own == "" || peerIP == "" || err != nil {
		return ""
	}
	return net.JoinHostPort(peerIP, port)
}
