package sidecar

import (
	"context"
	"errors"
	"fmt"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/inputs/apphealth"
	"github.com/leader-elector/leader-elector/internal/inputs/control"
)

// addAppHealth checks the app (APP_HEALTH_URL or APP_HEALTH_FILE) from the
// start, before the election runs, and tells the election every change.
func (s *Sidecar) addAppHealth() error {
	a := s.cfg.AppHealth
	chk, err := apphealth.New(apphealth.Config{URL: a.URL, File: a.File, MaxAge: a.FileMaxAge, Period: a.Period,
		Timeout: a.Timeout, Failures: a.Failures, Successes: a.Successes, Clock: s.clk, Log: s.log.With("output", "app health")})
	if err != nil {
		return fmt.Errorf("app health: %w", err)
	}
	s.appHealth = chk
	s.outputs = append(s.outputs, Output{Name: "app health", Run: func(ctx context.Context) error {
		chk.Run(ctx, func(healthy bool, reason string) { s.elector.ReportAppHealth(healthy, reason) })
		return nil // Run returns only once ctx ended: the sidecar stops, which is no failure
	}})
	return nil
}

// serveControl answers `leader-elector resign` on CONTROL_SOCKET. A socket
// that cannot be made costs only resign, so the sidecar runs on without it
// and says why: the default path lies next to the status file, whose
// directory may be missing (the replica then stays up, unready, as it did
// before the socket existed) or shared with another sidecar's.
func (s *Sidecar) serveControl(ctx context.Context) error {
	srv, err := control.Listen(s.cfg.ControlSocket, s.elector, control.Options{Log: s.log,
		Refused: func(err error) bool {
			return errors.Is(err, election.ErrNotLeader) || errors.Is(err, election.ErrGrantRefused)
		}})
	if err != nil {
		s.log.Error("no control socket: leader-elector resign will not reach this sidecar", "err", err)
		<-ctx.Done()
		return nil
	}
	return srv.Run(ctx)
}

// AppHealthReport is the app's health in /status, with APP_HEALTH_URL or
// APP_HEALTH_FILE.
type AppHealthReport struct {
	apphealth.State
	// LeadsUnhealthy is true while this replica leads with an unhealthy app
	// because no healthy peer offered to take over.
	LeadsUnhealthy bool `json:"leads_unhealthy"`
}
