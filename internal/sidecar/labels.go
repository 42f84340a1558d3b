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

// labelFollower sets the own label to follower and waits for the write,
// so that the Lease is handed on after it; but not when the pod is being
// deleted (st.Retired): a terminating pod is no ready endpoint of the
// Service any more, and the next leader demotes every peer that still says
// leader before it labels itself, so the handover need not wait for this
// write, which is the slowest step of a step-down on a busy node.
func (s *Sidecar) labelFollower(ctx context.Context, st election.State) error {
	if st.Retired {
		s.labels.Set(labeler.Follower)
		return nil
	}
	if err := s.labels.Demote(ctx); err != nil {
		return fmt.Errorf("the next leader demotes this pod's label: %w", err)
	}
	return nil
}
