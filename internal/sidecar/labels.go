package sidecar

import (
	"context"
	"fmt"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/labeler"
)

func (s *Sidecar) labelLeader(context.Context, election.State) error {
	s.labels.Set(labeler.Leader) // asynchronous: the label follows the file
	return nil
}

// labelRepaired records a role label the leader put right as an event.
func (s *Sidecar) labelRepaired(r labeler.Repair) {
	if s.events != nil {
		s.events.RoleLabelRepaired(r.Pod, r.UID, r.From, r.To)
	}
}

func (s *Sidecar) labelFollower(ctx context.Context, _ election.State) error {
	if err := s.labels.Demote(ctx); err != nil {
		return fmt.Errorf("the next leader demotes this pod's label: %w", err)
	}
	return nil
}
