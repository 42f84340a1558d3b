package sidecar

import (
	"context"
	"fmt"

	"github.com/leader-elector/leader-elector/election"
)

// publish tells the app it leads: the status file with its identity.
func (s *Sidecar) publish(_ context.Context, st election.State) error {
	err := s.file.Publish(st.Identity)
	s.fileErr.Note(err)
	if err != nil {
		return fmt.Errorf("cannot announce leadership, giving the Lease back: %w", err)
	}
	return nil
}

func (s *Sidecar) withdraw(context.Context, election.State) error {
	err := s.file.Withdraw()
	if err != nil { // a success is no recovery from a failed write
		s.fileErr.Note(err)
	}
	return err
}

// fileLost gives up a leadership that can no longer be announced.
func (s *Sidecar) fileLost(err error) {
	s.fileErr.Note(err)
	s.elector.Resign(fmt.Errorf("cannot restore the status file: %w", err))
}
