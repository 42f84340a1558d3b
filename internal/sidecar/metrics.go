package sidecar

import (
	"fmt"
	"net"
	"net/http"

	"github.com/leader-elector/leader-elector/health"
	"github.com/leader-elector/leader-elector/internal/outputs/metrics"
)

// instrument builds the metrics and returns d with its APIs wrapped in their
// counting decorators.
func (s *Sidecar) instrument(d Deps) (Deps, error) {
	m, err := metrics.New(metrics.Config{Lease: s.cfg.LeaseName, Identity: s.cfg.Identity, State: s.state, Clock: d.Clock})
	if err != nil {
		return d, err
	}
	s.metrics = m
	d.Leases = m.Leases(d.Leases)
	if d.Pods != nil {
		d.Pods = m.Pods(d.Pods)
	}
	s.deps = d
	return d, nil
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
