package sidecar

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/health"
	"github.com/leader-elector/leader-elector/internal/dropins/renewstatus"
	"github.com/leader-elector/leader-elector/internal/inputs/control"
	"github.com/leader-elector/leader-elector/internal/inputs/takeover"
)

func (s *Sidecar) healthServerPart() (Output, error)  { return serverPart(s.serveHealth), nil }
func (s *Sidecar) metricsServerPart() (Output, error) { return serverPart(s.serveMetrics), nil }

// serverPart is a server that Open binds with listen and Run serves.
func serverPart(listen func() (*health.Server, error)) Output {
	var srv *health.Server
	return Output{
		Open: func() (func(), error) {
			var err error
			if srv, err = listen(); err != nil || srv == nil {
				return nil, err
			}
			return func() { _ = srv.Close() }, nil
		},
		Run: func(ctx context.Context) error {
			if srv == nil {
				<-ctx.Done()
				return nil
			}
			return srv.Serve(ctx)
		},
	}
}

// streamsOff is what a stream or long-poll on the health listener is told
// without HEALTH_STREAMS=true.
const streamsOff = "event streams (GET /watch) and long-polls (GET /leader?wait=) are off on the health listener, which anyone on the pod network may reach: set HEALTH_STREAMS=true on the sidecar to serve them"

// handler serves the probes, /status, and the leader API's /leader and, with
// HEALTH_STREAMS, its long-poll and /watch.
func (s *Sidecar) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", health.Handler(health.Checks{Live: s.live, Ready: s.ready, Status: func() any { return s.report() },
		Extra: s.metricsOnHealth()}))
	leaders := s.leaders.Handler()
	if !s.cfg.HealthStreams {
		leaders = s.leaders.HandlerWithoutStreams(streamsOff)
	}
	mux.Handle("GET /leader", leaders)
	mux.Handle("GET /watch", leaders)
	mux.Handle("POST "+takeover.Path, takeover.Handler(s.elector))
	return mux
}

// serveHealth listens for the health endpoints; nil without an address
// (PROBE_ADDRESS=-).
func (s *Sidecar) serveHealth() (*health.Server, error) {
	if s.deps.Health == nil && s.cfg.HealthAddress() == "" {
		return nil, nil
	}
	h := s.handler()
	if s.deps.Health != nil {
		return health.Serve(s.deps.Health, h, s.log), nil
	}
	srv, err := health.Listen(s.cfg.HealthAddress(), h, s.log)
	if err != nil && s.cfg.ProbeAddress != "" {
		return nil, fmt.Errorf("PROBE_ADDRESS=%q: %w", s.cfg.ProbeAddress, err)
	} else if err != nil {
		return nil, fmt.Errorf("HEALTH_PORT=%d: %w", s.cfg.HealthPort, err)
	}
	return srv, nil
}

// metricsOnHealth is /metrics for the health listener, unless
// METRICS_ADDRESS gives it a listener of its own.
func (s *Sidecar) metricsOnHealth() map[string]http.Handler {
	if s.cfg.MetricsAddr != "" {
		return nil
	}
	return s.metricsRoutes()
}

func (s *Sidecar) metricsRoutes() map[string]http.Handler {
	return map[string]http.Handler{"GET /metrics": s.metrics.Handler()}
}

// serveMetrics binds METRICS_ADDRESS, if set; nil without it.
func (s *Sidecar) serveMetrics() (*health.Server, error) {
	if s.cfg.MetricsAddr == "" {
		return nil, nil
	}
	mux := http.NewServeMux()
	for pattern, h := range s.metricsRoutes() {
		mux.Handle(pattern, h)
	}
	ln := s.deps.Metrics
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.MetricsAddr); err != nil {
			return nil, fmt.Errorf("METRICS_ADDRESS=%s: listen for metrics: %w", s.cfg.MetricsAddr, err)
		}
	}
	return health.Serve(ln, mux, s.log), nil
}

// serveLeaders runs the leader API, on LEADER_HTTP_ADDRESS too when set.
func (s *Sidecar) serveLeaders(ctx context.Context) error {
	ln := s.deps.LeaderHTTP
	if ln == nil && s.cfg.LeaderHTTPAddress != "" {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.LeaderHTTPAddress); err != nil {
			return fmt.Errorf("LEADER_HTTP_ADDRESS=%s: %w", s.cfg.LeaderHTTPAddress, err)
		}
	}
	return s.leaders.Run(ctx, ln)
}

// serveControl answers `leader-elector resign` on CONTROL_SOCKET. A socket
// that cannot be made costs only resign, so the sidecar runs on without it
// and says why: the default path lies next to the status file, whose
// directory may be missing (the replica then stays up, unready, as it did
// before the socket existed) or shared with another sidecar's.
func (s *Sidecar) serveControl(ctx context.Context) error {
	srv, err := control.Listen(s.cfg.ControlSocket, resigner{s}, control.Options{Log: s.log,
		Refused: func(err error) bool {
			return errors.Is(err, election.ErrNotLeader) || errors.Is(err, election.ErrNotTaken) || errors.Is(err, election.ErrNoAddress)
		}})
	if err != nil {
		s.log.Error("no control socket: leader-elector resign will not reach this sidecar", "err", err)
		<-ctx.Done()
		return nil
	}
	return srv.Run(ctx)
}

// resigner carries `leader-elector resign` out: control asks by name.
type resigner struct{ s *Sidecar }

// Handover hands the Lease to the pod named to, where that pod takes a
// take-over offer (its IP, from one GET of the pod, with this sidecar's
// port), or, outside a pod, with no such pod or no right to read it, to the
// standby if to is the standby; to "" hands it to the standby, or releases
// it.
func (r resigner) Handover(ctx context.Context, to string) error {
	s := r.s
	succ := election.Successor{Identity: to}
	if to != "" && s.deps.Pods != nil && s.cfg.PodName != "" && s.address != "" {
		p, err := s.deps.Pods.Get(ctx, to, metav1.GetOptions{})
		switch {
		case err == nil:
			succ.Address = takeover.PeerAddress(s.address, p.Status.PodIP)
		case !apierrors.IsNotFound(err) && !apierrors.IsForbidden(err):
			return fmt.Errorf("read pod %s to hand the lease to it: %w", to, err)
		}
	}
	return s.elector.Handover(ctx, succ)
}

// serveStatusEndpoint serves k8s-await-election's status endpoint on
// STATUS_ENDPOINT until ctx ends. A taken address stops the sidecar.
func (s *Sidecar) serveStatusEndpoint(ctx context.Context) error {
	h := renewstatus.Handler(renewstatus.Config{State: s.elector.State, Clock: s.clk,
		LeaseDuration: s.cfg.LeaseDuration, RenewDeadline: s.cfg.RenewDeadline})
	srv, err := health.Listen(s.cfg.StatusEndpoint, h, s.log)
	if err != nil {
		return fmt.Errorf("STATUS_ENDPOINT=%s: %w", s.cfg.StatusEndpoint, err)
	}
	return srv.Serve(ctx)
}
