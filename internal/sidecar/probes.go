package sidecar

import (
	"fmt"
	"runtime"
	"time"

	"github.com/leader-elector/leader-elector/internal/inputs/apphealth"
	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
	"github.com/leader-elector/leader-elector/labeler"
)

// live fails when the process should be restarted: the election loop has
// not run for twice LEASE_DURATION. A slow or unreachable API server is no
// reason: a restart would not help.
func (s *Sidecar) live() error {
	if since := s.clk.Since(s.elector.State().LastTick); since > 2*s.cfg.LeaseDuration {
		return fmt.Errorf("election loop has not run for %s", since.Round(time.Millisecond))
	}
	return nil
}

// writableEvery is how often readiness checks the status directory at most.
const writableEvery = time.Second

// ready fails while this replica cannot do its job locally: before it has
// read the Lease once, and while the status directory is not writable. It
// does not follow the API server afterwards: a native sidecar's readiness is
// the pod's, and an API outage must not take every replica out of its
// Services. Staleness of the Lease is in /status and the log.
func (s *Sidecar) ready() error {
	st := s.elector.State()
	if st.LastObserved.IsZero() {
		err := fmt.Errorf("lease %s/%s not read yet", s.cfg.Namespace, s.cfg.LeaseName)
		if st.LastError != "" {
			err = fmt.Errorf("%w: %s", err, st.LastError)
		}
		return err
	}
	return s.writable()
}

// Report is the JSON of /status.
type Report struct {
	Identity     string     `json:"identity"`
	Leader       string     `json:"leader"`
	IsLeader     bool       `json:"is_leader"`
	Lease        string     `json:"lease"`
	Namespace    string     `json:"namespace"`
	PodName      string     `json:"pod_name,omitempty"`
	PodIP        string     `json:"pod_ip,omitempty"`
	Transitions  int        `json:"transitions"`
	AcquireTime  *time.Time `json:"acquire_time,omitempty"`
	RenewTime    *time.Time `json:"renew_time,omitempty"`
	LastObserved *time.Time `json:"last_observed,omitempty"`
	Watching     bool       `json:"watching"`
	StatusFile   string     `json:"status_file"`
	LastError    string     `json:"last_error,omitempty"`
	StatusError  string     `json:"status_file_error,omitempty"`
	// Withdrawing is, while a step-down waits for the status file to be
	// removed, why it cannot be: the Lease is kept, renewed, meanwhile.
	Withdrawing string `json:"withdrawing,omitempty"`
	// Retired is set once this pod's deletion made it hand over: it leads
	// no more. HandoverError is why the handover on deletion cannot work
	// (the pods cannot be read or watched, or PEER_SELECTOR misses this
	// pod); a deletion then hands over on SIGTERM.
	Retired       bool            `json:"retired,omitempty"`
	HandoverError string          `json:"handover_on_delete_error,omitempty"`
	Label         *labeler.Status `json:"label,omitempty"`
	Goroutines    int             `json:"goroutines"`
	Version       string          `json:"version"`

	// Service is the EndpointSlice writer's state, with SERVICE_NAME.
	Service *serviceslice.Status `json:"service,omitempty"`
	// Standby is the follower that offered to lead next, if any.
	Standby string `json:"standby,omitempty"`
	// AppHealth is the app's health, with APP_HEALTH_URL or APP_HEALTH_FILE.
	AppHealth *AppHealthReport `json:"app_health,omitempty"`
}

func (s *Sidecar) report() Report {
	st := s.elector.State()
	r := Report{
		Identity: st.Identity, Leader: st.Leader, IsLeader: st.IsLeader,
		Lease: s.cfg.LeaseName, Namespace: s.cfg.Namespace, PodName: s.cfg.PodName, PodIP: s.cfg.PodIP,
		Transitions: st.Transitions, AcquireTime: timePtr(st.AcquireTime), RenewTime: timePtr(st.RenewTime),
		LastObserved: timePtr(st.LastObserved), Watching: st.Watching, StatusFile: s.file.Path(),
		LastError: st.LastError, StatusError: s.fileErr.Last(), Withdrawing: st.Withdrawing,
		Goroutines: runtime.NumGoroutine(), Version: s.deps.Version,
	}
	r.Retired = st.Retired
	if s.succession != nil {
		r.HandoverError = s.succession.LastError()
	}
	if s.labels != nil {
		ls := s.labels.Status()
		r.Label = &ls
	}
	if s.slice != nil {
		ss := s.slice.Status()
		r.Service = &ss
	}
	r.Standby = st.Standby
	if s.appHealth != nil {
		r.AppHealth = &AppHealthReport{State: s.appHealth.State(), LeadsUnhealthy: st.LeadsUnhealthy}
	}
	return r
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// AppHealthReport is the app's health in /status, with APP_HEALTH_URL or
// APP_HEALTH_FILE.
type AppHealthReport struct {
	apphealth.State
	// LeadsUnhealthy is true while this replica leads with an unhealthy app
	// because no healthy peer offered to take over.
	LeadsUnhealthy bool `json:"leads_unhealthy"`
}
