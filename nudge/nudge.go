// Package nudge tells the next leader, right after a handover, to read the
// Lease now instead of waiting for its watch, which on a Lease with hundreds
// of watchers delivers the change many milliseconds later: a leader that
// released the Lease to its standby sends one POST /v1/lease-changed to the
// address the standby wrote beside its offer (election.Notes.StandbyAddress),
// and the standby's Handler answers it by election.Elector.Poke.
//
// The request carries nothing and is not authenticated: the standby reads
// the Lease and decides on what it read, by the election's own rules, and
// Poke bounds what anyone's requests cost the API server to one read per
// election.PokeInterval.
package nudge

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// Path is the endpoint on the health port that takes a nudge.
const Path = "/v1/lease-changed"

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

// Sender sends nudges. Create it with NewSender; its Run keeps the process
// from exiting before the nudges it sent have been answered or timed out.
type Sender struct {
	client  *http.Client
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
	return &Sender{client: &http.Client{Transport: o.Transport, Timeout: o.Timeout}, timeout: o.Timeout, log: o.Log}
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
