package sidecar

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/leader-elector/leader-elector/election"
)

// onStarted runs each output's Lead in order; the first error gives the
// Lease back.
func (s *Sidecar) onStarted(ctx context.Context, st election.State) error {
	for _, o := range s.outputs {
		if o.Lead == nil {
			continue
		}
		if err := o.Lead(ctx, st); err != nil {
			return fmt.Errorf("%s: %w", o.Name, err)
		}
	}
	return nil
}

// onStopped runs each output's Follow in order, whatever the others did:
// the status file goes first, so that the app stops acting as leader before
// anything else happens. It fails while a Withdraws output's Follow fails:
// the election then keeps the Lease and calls it again, and only those
// outputs follow again.
func (s *Sidecar) onStopped(ctx context.Context, st election.State) error {
	outputs := s.outputs
	if len(s.unwithdrawn) > 0 {
		outputs = s.unwithdrawn
	}
	var failed []Output
	var errs []error
	for _, o := range outputs {
		if o.Follow == nil {
			continue
		}
		if err := o.Follow(ctx, st); err != nil {
			s.log.Error("stepping down: an output did not follow", "output", o.Name, "err", err)
			if o.Withdraws {
				failed = append(failed, o)
				errs = append(errs, fmt.Errorf("%s: %w", o.Name, err))
			}
		}
	}
	s.unwithdrawn = failed
	return errors.Join(errs...)
}

// onChange tells every output that observes the election.
func (s *Sidecar) onChange(st election.State) {
	if f := s.deps.StartupDone; f != nil {
		s.startupDone.Do(func() { go f() })
	}
	for _, o := range s.outputs {
		if o.Observe != nil {
			o.Observe(st)
		}
	}
}

// Forward passes sig on to the command, if one runs, and reports whether it
// did. Then the sidecar keeps leading until the command exits, and Run
// returns its *gatekeeper.ExitError once it stepped down. Otherwise the
// caller stops the sidecar as usual.
func (s *Sidecar) Forward(sig os.Signal) bool {
	return s.command != nil && s.command.Forward(sig)
}
