package election

import (
	"context"
	"fmt"
	"time"
)

// appHealth is one report of the app's health.
type appHealth struct {
	healthy bool
	reason  string
}

// ReportAppHealth tells the candidate its app's health, when Config.AppHealth
// is set; it does not block. Only the latest report counts.
func (e *Elector) ReportAppHealth(healthy bool, reason string) {
	e.reportMu.Lock()
	e.reported = appHealth{healthy: healthy, reason: reason}
	e.reportMu.Unlock()
	select {
	case e.health <- struct{}{}:
	default:
	}
}

// takeHealth applies the latest health report.
func (r *run) takeHealth() {
	if !r.cfg.AppHealth {
		return
	}
	r.e.reportMu.Lock()
	h := r.e.reported
	r.e.reportMu.Unlock()
	r.healthy, r.healthReason = h.healthy, h.reason
	r.e.update(func(s *State) {
		s.AppHealthy, s.AppHealth = h.healthy, h.reason
		if h.healthy {
			s.LeadsUnhealthy = false
		}
	})
}

// checkHealth hands over from a leader whose app is unhealthy, once it led
// for MinTerm, to the standby; with no standby it keeps leading and says so.
func (r *run) checkHealth(ctx context.Context, now time.Time) {
	if !r.leading || r.healthy || now.Before(r.acquiredAt.Add(r.cfg.MinTerm)) {
		return
	}
	standby := r.lease.Notes.Standby
	if standby == "" || standby == r.cfg.Identity {
		if !r.e.State().LeadsUnhealthy {
			r.log.Warn("the app is unhealthy, but no healthy peer offered to lead: keeps leading", "app", r.healthReason)
			r.e.update(func(s *State) { s.LeadsUnhealthy = true })
		}
		return
	}
	r.stepDown(ctx, fmt.Sprintf("the app is unhealthy (%s); %q takes over", r.healthReason, standby), r.cfg.RenewDeadline)
}
