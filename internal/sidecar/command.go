package sidecar

import (
	"context"
	"fmt"
	"os"

	"github.com/leader-elector/leader-elector/health"
	"github.com/leader-elector/leader-elector/internal/dropins/renewstatus"
	"github.com/leader-elector/leader-elector/internal/outputs/gatekeeper"
)

// addCommand adds the gatekeeper, which runs cfg.Command while this replica
// leads. It comes right after the status file, before the label: stepping
// down, stopping the command is what may take Follow's whole RETRY_PERIOD,
// and it matters more than the label, which the next leader repairs.
func (s *Sidecar) addCommand() error {
	g, err := gatekeeper.New(gatekeeper.Config{Command: s.cfg.Command, StopGrace: s.cfg.CommandStopGrace,
		// The command inherits the sidecar's standard streams, as a
		// container's main process would have them.
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Clock: s.clk, Log: s.log})
	if err != nil {
		return err
	}
	s.command = g
	s.outputs = append(s.outputs, Output{Name: "command", Lead: g.Lead, Follow: g.Follow, Run: g.Run})
	return nil
}

// Forward passes sig on to the command, if one runs, and reports whether it
// did. Then the sidecar keeps leading until the command exits, and Run
// returns its *gatekeeper.ExitError once it stepped down. Otherwise the
// caller stops the sidecar as usual.
func (s *Sidecar) Forward(sig os.Signal) bool {
	return s.command != nil && s.command.Forward(sig)
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
