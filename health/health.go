// Package health serves the sidecar's probes and status over HTTP: /healthz
// and /livez (the process and its election loop run), /readyz (it can do its
// job) and /status (a JSON report), and any extra endpoint the caller mounts
// beside them, such as /metrics.
package health

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/leader-elector/leader-elector/internal/connlimit"
)

// Checks are the answers the endpoints give. A nil func always passes.
type Checks struct {
	// Live fails when the process should be restarted.
	Live func() error
	// Ready fails when the replica cannot do its job now.
	Ready func() error
	// Status returns the value /status encodes as JSON.
	Status func() any
	// Extra are more endpoints on the same listener, by http.ServeMux
	// pattern, such as "GET /metrics". A pattern that conflicts with the
	// probes' panics, as ServeMux.Handle does.
	Extra map[string]http.Handler
}

// Handler returns the endpoints for c.
func Handler(c Checks) http.Handler {
	mux := http.NewServeMux()
	live := probe(c.Live)
	mux.Handle("GET /healthz", live)
	mux.Handle("GET /livez", live)
	mux.Handle("GET /readyz", probe(c.Ready))
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		var v any = struct{}{}
		if c.Status != nil {
			v = c.Status()
		}
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			http.Error(w, "encode status: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(append(b, '\n')) // an error means the client went away
	})
	for pattern, h := range c.Extra {
		mux.Handle(pattern, h)
	}
	return mux
}

func probe(check func() error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if check != nil {
			if err := check(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ok: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
}

// Server is the health server on one listener.
type Server struct {
	ln  net.Listener
	srv *http.Server
}

// Listen binds addr (such as ":8080") so that a taken port is reported at
// start, not later.
func Listen(addr string, h http.Handler, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for health on %s: %w", addr, err)
	}
	return Serve(ln, h, log), nil
}

// MaxConnections and MaxConnectionsPerAddress bound the connections a
// Server holds open, in all and from one client address; one beyond them is
// closed as it is accepted. A connection costs about 25 KB while it is
// served (a goroutine and its buffers), so the bound keeps a flood of
// connections within the sidecar's memory limit, and one client address
// cannot take the slots of the kubelet's probes. Event streams and
// long-polls have smaller bounds of their own (package leaderhttp).
const (
	MaxConnections           = 512
	MaxConnectionsPerAddress = 64
)

// Serve returns a Server for h on ln, which it owns from now on; it serves
// at most MaxConnections at once.
func Serve(ln net.Listener, h http.Handler, log *slog.Logger) *Server {
	ln = connlimit.New(ln, MaxConnections, MaxConnectionsPerAddress)
	return &Server{ln: ln, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    8 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}

// Close releases the listener of a server that is not going to Serve.
func (s *Server) Close() error { return s.ln.Close() }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve answers requests until ctx ends, then shuts down gracefully.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve health: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	if err != nil {
		return fmt.Errorf("shut down health server: %w", err)
	}
	return nil
}
