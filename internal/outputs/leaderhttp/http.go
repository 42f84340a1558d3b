package leaderhttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/leader-elector/leader-elector/internal/connlimit"
)

// NAISHandler serves the NAIS elector's API: GET /sse is an event stream of
// its JSON, any other path answers the JSON, as there.
func (h *Hub) NAISHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sse" {
			h.stream(w, r, formatNAIS, h.nais)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = w.Write(NAISJSON(h.Leader())) // no newline, as there; an error means the client left
	})
}

// Handler serves the sidecar's own GET /leader (a long-poll with ?wait=)
// and GET /watch (an event stream), for the health listener.
func (h *Hub) Handler() http.Handler { return h.handler("") }

// HandlerWithoutStreams serves GET /leader's immediate answer only: a
// long-poll (?wait= above 0s) and GET /watch get 403 Forbidden with off, the
// reason and how to turn them on. For a listener open to the pod network,
// where they are opt-in: each costs memory for as long as a client holds it.
func (h *Hub) HandlerWithoutStreams(off string) http.Handler {
	if off == "" {
		off = "event streams and long-polls are off on this listener"
	}
	return h.handler(off)
}

// handler serves /leader and /watch; with off set, no stream or long-poll.
func (h *Hub) handler(off string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /leader", func(w http.ResponseWriter, r *http.Request) { h.serveLeader(w, r, off) })
	mux.HandleFunc("GET /watch", func(w http.ResponseWriter, r *http.Request) {
		if off != "" {
			http.Error(w, off, http.StatusForbidden)
			return
		}
		h.stream(w, r, formatOurs, h.own)
	})
	return mux
}

// Run ends each announced term on time until ctx ends; with ln, it also
// serves NAISHandler on ln, which it owns from now on. When ctx ends, every
// stream and long-poll ends, then the server shuts down.
func (h *Hub) Run(ctx context.Context, ln net.Listener) error {
	if ln == nil {
		return h.run(ctx)
	}
	// Twice its bound of streams and long-polls: a flood of connections
	// costs no memory beyond it (package connlimit).
	ln = connlimit.New(ln, 2*h.nais.max, 0)
	srv := &http.Server{
		Handler:           h.NAISHandler(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second, // streams and long-polls move it
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve the leader API on %s: %w", ln.Addr(), err)
		}
		return nil
	})
	g.Go(func() error {
		err := h.run(gctx) // closes the hub, ending the streams, before the shutdown waits for them
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		if serr := srv.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("shut down the leader API: %w", serr))
		}
		return err
	})
	return g.Wait()
}

// serveLeader answers /leader: at once, or, with wait, once the answer
// differs from since and name (the client's last answer) or changes. With
// off set, a wait is refused with off.
func (h *Hub) serveLeader(w http.ResponseWriter, r *http.Request, off string) {
	q, err := parseLongPoll(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if q.wait > 0 && off != "" {
		http.Error(w, off, http.StatusForbidden)
		return
	}
	answer := func(l Leader) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(JSON(l), '\n')) // an error means the client left
	}
	if q.wait == 0 {
		answer(h.Leader())
		return
	}
	if !h.own.acquire(w, r) {
		return
	}
	defer h.own.release(r)
	rc := http.NewResponseController(w)
	// The server's WriteTimeout would cut the answer off; unsupported: no
	// timeout to lift. (Its ReadTimeout no longer counts once the handler runs.)
	_ = rc.SetWriteDeadline(time.Now().Add(q.wait + h.cfg.WriteTimeout))
	l, changed := h.wait()
	if q.differs(l) {
		answer(l)
		return
	}
	timeout := h.clk.NewTimer(q.wait)
	defer timeout.Stop()
	select {
	case <-changed:
	case <-timeout.C():
	case <-r.Context().Done():
		return
	}
	answer(h.Leader())
}

// longPoll is /leader's query.
type longPoll struct {
	wait     time.Duration
	since    int
	hasSince bool
	name     string
	hasName  bool
}

func parseLongPoll(r *http.Request) (longPoll, error) {
	var p longPoll
	q := r.URL.Query()
	var errs []error
	if v := q.Get("wait"); q.Has("wait") {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 || d > MaxWait {
			errs = append(errs, fmt.Errorf("wait=%q: must be a Go duration from 0s to %s, such as 30s", v, MaxWait))
		}
		p.wait = d
	}
	if v := q.Get("since"); q.Has("since") {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			errs = append(errs, fmt.Errorf("since=%q: must be a whole number from 0, the transitions of an earlier answer", v))
		}
		p.since, p.hasSince = n, true
	}
	p.name, p.hasName = q.Get("name"), q.Has("name")
	return p, errors.Join(errs...)
}

// differs reports whether l is news to a client whose last answer had the
// transitions since and the leader name.
func (p longPoll) differs(l Leader) bool {
	return (p.hasSince && l.Transitions != p.since) || (p.hasName && l.Name != p.name)
}

// stream serves an event stream of format f: the current message at once,
// then one per change, and a comment line every Heartbeat.
func (h *Hub) stream(w http.ResponseWriter, r *http.Request, f format, p *pool) {
	if !p.acquire(w, r) {
		return
	}
	defer p.release(r)
	sub, first := h.subscribe(f)
	if sub == nil {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer h.unsubscribe(sub)
	rc := http.NewResponseController(w)
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Connection", "keep-alive")
	hd.Set("X-Accel-Buffering", "no") // nginx would otherwise hold the messages back
	w.WriteHeader(http.StatusOK)
	heartbeat := h.clk.NewTicker(h.cfg.Heartbeat)
	defer heartbeat.Stop()
	if !h.send(w, rc, first) {
		return
	}
	for {
		select {
		case <-r.Context().Done():
			return
		case m, ok := <-sub.msgs:
			if !ok || !h.send(w, rc, m) {
				return // dropped for falling behind, the hub closed, or the client left
			}
		case <-heartbeat.C():
			if !h.write(w, rc, ping) {
				return
			}
		}
	}
}

var (
	dataPrefix = []byte("data: ")
	blankLine  = []byte("\n\n")
	ping       = []byte(": ping\n\n")
)

// send writes one message, as "data: <json>" and a blank line.
func (h *Hub) send(w http.ResponseWriter, rc *http.ResponseController, msg []byte) bool {
	return h.write(w, rc, dataPrefix, msg, blankLine)
}

// write writes parts and flushes them, within WriteTimeout.
func (h *Hub) write(w http.ResponseWriter, rc *http.ResponseController, parts ...[]byte) bool {
	// A network deadline is on the real clock, whatever the hub's clock.
	_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
	for _, p := range parts {
		if _, err := w.Write(p); err != nil {
			return false
		}
	}
	return rc.Flush() == nil
}
