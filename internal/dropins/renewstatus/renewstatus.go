// Package renewstatus answers k8s-await-election's status endpoint: any path
// returns 200 {"status": "ok"}, or 500 {"status": "expired"} while this
// replica believes it leads but has not renewed its Lease for longer than
// LeaseDuration plus Slack. That means its election loop is stuck past the
// point where it should have stepped down, which a liveness probe can act on.
// Followers always answer ok. The rule and the bodies are client-go's
// LeaderElector.Check(2*time.Second), as the original serves it.
package renewstatus

import (
	"fmt"
	"net/http"
	"time"

	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
)

// Slack is how much older than LeaseDuration the last renew may be, as the
// original allows.
const Slack = 2 * time.Second

// The bodies, byte for byte as the original writes them.
const (
	OK      = `{"status": "ok"}`
	Expired = `{"status": "expired"}`
)

// Config configures the endpoint.
type Config struct {
	// State returns the election's current State. Required.
	State func() election.State
	// Clock is the source of time; clock.RealClock{} when nil.
	Clock clock.PassiveClock
	// LeaseDuration and RenewDeadline are the election's.
	LeaseDuration, RenewDeadline time.Duration
}

// Check returns an error when st leads but its last successful renew, sent
// RenewDeadline before st.LeadUntil, is older than leaseDuration+Slack at now.
func Check(st election.State, now time.Time, leaseDuration, renewDeadline time.Duration) error {
	if !st.IsLeader {
		return nil
	}
	renewed := st.LeadUntil.Add(-renewDeadline)
	if age := now.Sub(renewed); age > leaseDuration+Slack {
		return fmt.Errorf("leading, but the last renew was sent %s ago, more than the lease duration %s plus %s",
			age.Round(time.Millisecond), leaseDuration, Slack)
	}
	return nil
}

// Handler answers every method and path with the status.
func Handler(c Config) http.Handler {
	clk := c.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// The original sets no type: Go's sniffing gives this one.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if Check(c.State(), clk.Now(), c.LeaseDuration, c.RenewDeadline) != nil {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(Expired)) // an error means the client went away
			return
		}
		_, _ = w.Write([]byte(OK))
	})
}
