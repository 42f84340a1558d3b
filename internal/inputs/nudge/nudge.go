// Package nudge carries a stepping-down leader's two messages to its
// standby, at the address the standby wrote beside its offer
// (election.Notes.StandbyAddress), on the standby's health port:
//
//   - POST /v1/take-over carries the leader's signed take-over offer
//     (election.Offer); the standby's TakeOverHandler answers it by
//     election.Elector.TakeOver, which checks the signature against the
//     holder key in the Lease and writes the standby as holder. 200 means
//     taken; anything else, or no answer, and the leader releases.
//   - POST /v1/lease-changed, after a release, tells the standby to read the
//     Lease now instead of waiting for its watch, which on a Lease with
//     hundreds of watchers delivers the change many milliseconds later; the
//     standby's Handler answers it by election.Elector.Poke. It carries
//     nothing and is not authenticated: the standby decides on what it read,
//     by the election's own rules, and Poke bounds what anyone's requests
//     cost the API server to one read per election.PokeInterval.
package nudge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/leader-elector/leader-elector/election"
)

// Path is the endpoint on the health port that takes a nudge.
const Path = "/v1/lease-changed"

// TakeOverPath is the endpoint on the health port that takes an offer.
const TakeOverPath = "/v1/take-over"

// maxOffer bounds the body of a take-over request; an offer is a few
// hundred bytes.
const maxOffer = 4 << 10

// DefaultTimeout bounds one nudge: it is worth sending only while it is
// faster than the standby's watch.
const DefaultTimeout = 100 * time.Millisecond

// Poker is what a nudge asks of the election: election.Elector.Poke.
type Poker interface {
	// Poke asks for a read of the Lease; false: refused by the rate limit.
	Poke() bool
}

// Handler answers POST Path: 202 Accepted when the poke was taken, 429 Too
// Many Requests when the rate limit refused it (its read then follows at
// the end of the interval).
func Handler(p Poker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if !p.Poke() {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// Taker is what an offer asks of the election: election.Elector.TakeOver.
type Taker interface {
	// TakeOver takes the Lease on a signed offer; errors wrapping
	// election.ErrOfferRefused say the offer does not hold.
	TakeOver(ctx context.Context, offer []byte) error
}

// TakeOverHandler answers POST TakeOverPath: 200 OK once this candidate
// took the Lease and leads; 409 Conflict, with the reason, when the offer
// does not hold (bad signature, another version, not for this candidate);
// 503 Service Unavailable when the write failed or did not finish while
// the leader waited; 413 for a body too large to be an offer.
func TakeOverHandler(t Taker) http.Handler {
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

// Sender sends nudges and offers. Create it with NewSender; its Run keeps the process
// from exiting before the nudges it sent have been answered or timed out.
type Sender struct {
	client  *http.Client // no timeout of its own: each request has a context
	timeout time.Duration
	log     *slog.Logger
	wg      sync.WaitGroup
}

// Options configure a Sender. The zero value is usable.
type Options struct {
	// Timeout bounds one nudge; DefaultTimeout when zero.
	Timeout time.Duration
	// Transport sends the requests; a transport of its own, with no proxy
	// and no kept-alive connections, when nil.
	Transport http.RoundTripper
	// Log receives one debug line per failed nudge; slog.Default() when nil.
	Log *slog.Logger
}

// NewSender returns a Sender.
func NewSender(o Options) *Sender {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Transport == nil {
		// Pod to pod: no proxy; one request per handover: no idle pool.
		o.Transport = &http.Transport{Proxy: nil, DisableKeepAlives: true,
			DialContext: (&net.Dialer{Timeout: o.Timeout}).DialContext}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return &Sender{client: &http.Client{Transport: o.Transport}, timeout: o.Timeout, log: o.Log}
}

// Nudge sends one POST to http://address/v1/lease-changed, in a goroutine
// of its own: it does not block. It plugs into election.Callbacks.Nudge.
func (s *Sender) Nudge(identity, address string) {
	s.wg.Go(func() {
		if err := s.send(address); err != nil {
			s.log.Debug("nudging the next leader failed; it sees the Lease through its watch", "successor", identity, "address", address, "err", err)
			return
		}
		s.log.Debug("nudged the next leader", "successor", identity, "address", address)
	})
}

func (s *Sender) send(address string) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+address+Path, http.NoBody)
	if err != nil {
		return fmt.Errorf("nudge %s: %w", address, err)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("nudge %s: %w", address, err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("nudge %s: %s", address, resp.Status)
	}
	return nil
}

// HandOff sends offer to the standby identity at address and waits, within
// ctx, for its answer: nil when it took the Lease. It plugs into
// election.Callbacks.HandOff.
func (s *Sender) HandOff(ctx context.Context, identity, address string, offer []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+address+TakeOverPath, bytes.NewReader(offer))
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

// Run waits until ctx ends, then until every nudge sent has been answered
// or timed out. It returns nil.
func (s *Sender) Run(ctx context.Context) error {
	<-ctx.Done()
	s.wg.Wait()
	return nil
}

// Address is where this replica takes nudges: podIP with the port of the
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
