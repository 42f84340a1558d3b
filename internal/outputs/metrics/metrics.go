// Package metrics shows the election to Prometheus on a registry of its own:
// client-go's leader election metrics under their established names, so that
// existing dashboards work, the sidecar's own under leader_elector_, and the
// Go runtime and process collectors. Nothing that imported packages register
// on prometheus.DefaultRegisterer is served.
//
// It learns what happens in three ways: decorators of the Lease and pod APIs
// count and time the requests (Leases, Pods); the sidecar calls Observe with
// every change of the election's State and Lead once the status file was
// published; and the sidecar reports the errors that no request shows
// (StatusFileError, LabelError). Gauges of the election's state are read
// from Config.State at every scrape.
package metrics

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
)

// Config configures Metrics.
type Config struct {
	// Lease is the Lease's name: the name label of client-go's metrics.
	Lease string
	// Identity is this replica's holder identity.
	Identity string
	// State returns the election's current State. Required.
	State func() election.State
	// Clock is the source of time; clock.RealClock{} when nil.
	Clock clock.PassiveClock
}

// Buckets of the histograms, in seconds: a renew takes milliseconds, a
// handover after a release tens of them.
var (
	renewBuckets    = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}
	handoverBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
)

// Metrics holds the registry and every metric the sidecar exports.
type Metrics struct {
	cfg   Config
	clock clock.PassiveClock
	reg   *prometheus.Registry

	slowpath      prometheus.Counter
	transitions   prometheus.Counter
	renewDuration prometheus.Histogram
	lastRenew     prometheus.Gauge
	apiErrors     *prometheus.CounterVec
	watchRestarts prometheus.Counter
	fileErrors    prometheus.Counter
	labelErrors   prometheus.Counter
	handover      prometheus.Histogram

	mu sync.Mutex
	// observed is set by the first Observe; term is the last (leader,
	// transitions) seen with a leader, if any.
	observed bool
	term     *term
	// vacantSince is when Observe first saw the Lease without a holder, since
	// it last saw one; zero while it names one.
	vacantSince time.Time
	// takeover is when the vacancy or the previous holder's term that the
	// latest acquiring write took over began to be free; zero if unknown.
	takeover time.Time
	// freshRead is set by a successful Lease read while leading, and cleared
	// by the next write: a renew that needed it took client-go's slow path.
	freshRead bool
	// watches counts the Lease watch requests.
	watches int
}

type term struct {
	leader      string
	transitions int
}

// New returns the metrics for cfg, registered on a registry of their own.
func New(cfg Config) (*Metrics, error) {
	if cfg.State == nil {
		return nil, errors.New("metrics config: State is required")
	}
	cfg.Clock = cmp.Or[clock.PassiveClock](cfg.Clock, clock.RealClock{})
	m := &Metrics{cfg: cfg, clock: cfg.Clock, reg: prometheus.NewRegistry()}
	m.defineElection(prometheus.Labels{"name": cfg.Lease})
	m.defineErrors()
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&stateCollector{m: m, lease: cfg.Lease},
		m.slowpath, m.transitions, m.renewDuration, m.lastRenew, m.apiErrors,
		m.watchRestarts, m.fileErrors, m.labelErrors, m.handover,
	)
	return m, nil
}

// defineElection defines the metrics of the election: its renews,
// transitions and handovers.
func (m *Metrics) defineElection(lease prometheus.Labels) {
	m.slowpath = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "leader_election_slowpath_total",
		Help: "Total number of slow path exercised in renewing leader leases, as client-go counts it: renews by the leader " +
			"that first had to read the Lease afresh (its cached version was no longer current, or the write was answered " +
			"with a conflict). 'name' is the Lease.",
		ConstLabels: lease,
	})
	m.transitions = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "leader_elector_transitions_total",
		Help: "Leadership changes this replica saw since it started: the Lease named a new holder, or its leaseTransitions " +
			"grew. The holder found at the first observation is not counted.",
	})
	m.renewDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "leader_elector_renew_duration_seconds",
		Help:    "Duration of this replica's writes of the Lease that name it as holder (acquire or renew), failed ones included.",
		Buckets: renewBuckets,
	})
	m.lastRenew = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "leader_elector_last_renew_timestamp_seconds",
		Help: "The renewTime, in Unix seconds, of this replica's latest successful write of the Lease as its holder; 0 before the first.",
	})
	m.handover = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "leader_elector_handover_seconds",
		Help: "On the new leader: time from when the Lease became free (this replica saw it without a holder, " +
			"or the previous holder's term expired) until this replica published the status file.",
		Buckets: handoverBuckets,
	})
}

// defineErrors defines the metrics of what failed: API requests, watches,
// the status file and the role label.
func (m *Metrics) defineErrors() {
	m.apiErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "leader_elector_api_errors_total",
		Help: "Failed requests to the API server, by op (lease_get, lease_list, lease_create, lease_update, lease_watch, " +
			"pod_get, pod_list, pod_watch, pod_patch) and code: the HTTP status code of the answer (409 is a lost race for " +
			"the Lease), or canceled (the sidecar gave up: its deadline passed or it shut down), timeout, network or other.",
	}, []string{"op", "code"})
	m.watchRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "leader_elector_watch_restarts_total",
		Help: "Watch requests for the Lease after the first: each resumes or restarts a watch that ended or failed.",
	})
	m.fileErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "leader_elector_status_file_errors_total",
		Help: "Errors writing, removing, watching or restoring the status file.",
	})
	m.labelErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "leader_elector_label_errors_total",
		Help: "Failed attempts to write the role label (LABEL_POD_ROLE): the own pod's label, demoting a peer, or reading the peers.",
	})
}

// Handler serves the registry in the Prometheus text (or OpenMetrics) format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{EnableOpenMetrics: true})
}

// Gatherer is the registry, for tests.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }

// Observe takes in a change of the election's State. It never blocks.
func (m *Metrics) Observe(s election.State) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.Leader == "" {
		if m.vacantSince.IsZero() {
			m.vacantSince = m.clock.Now()
		}
	} else {
		m.vacantSince = time.Time{}
		t := term{leader: s.Leader, transitions: s.Transitions}
		if m.observed && (m.term == nil || *m.term != t) {
			m.transitions.Inc()
		}
		m.term = &t
	}
	m.observed = true
}

// Lead ends a handover: the sidecar calls it right after the status file was
// published. It never fails.
func (m *Metrics) Lead(context.Context, election.State) error {
	m.mu.Lock()
	start := m.takeover
	m.takeover = time.Time{}
	m.mu.Unlock()
	if !start.IsZero() {
		m.handover.Observe(max(m.clock.Since(start).Seconds(), 0))
	}
	return nil
}

// StatusFileError counts err, if not nil, as an error of the status file.
func (m *Metrics) StatusFileError(err error) {
	if err != nil {
		m.fileErrors.Inc()
	}
}

// LabelError counts err, if not nil, as an error of the role label.
func (m *Metrics) LabelError(err error) {
	if err != nil {
		m.labelErrors.Inc()
	}
}

// holderWrite is called before a write of the Lease that names holder. It
// reports whether the write names this replica, and notes what client-go
// would count: a renew after a fresh read is its slow path, and an acquiring
// write takes over what the State shows (a vacancy, or a term that expired).
func (m *Metrics) holderWrite(holder string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	fresh := m.freshRead
	m.freshRead = false
	if holder == "" || holder != m.cfg.Identity {
		return false
	}
	s := m.cfg.State()
	switch {
	case s.IsLeader:
		if fresh {
			m.slowpath.Inc()
		}
	case s.Leader == "":
		m.takeover = m.vacantSince
	case s.Leader != m.cfg.Identity:
		m.takeover = s.HeldUntil
	default: // its own term, which lapsed without a release
		m.takeover = time.Time{}
	}
	return true
}

// leaseRead notes a successful read of the Lease by the election.
func (m *Metrics) leaseRead() {
	if !m.cfg.State().IsLeader {
		return
	}
	m.mu.Lock()
	m.freshRead = true
	m.mu.Unlock()
}

// renewed records a finished write that named this replica, sent at start;
// renewTime is the written renewTime if it succeeded.
func (m *Metrics) renewed(start time.Time, renewTime *time.Time) {
	m.renewDuration.Observe(max(m.clock.Since(start).Seconds(), 0))
	if renewTime != nil {
		m.lastRenew.Set(float64(renewTime.UnixNano()) / 1e9)
	}
}

// leaseWatch counts a watch request for the Lease.
func (m *Metrics) leaseWatch() {
	m.mu.Lock()
	m.watches++
	restart := m.watches > 1
	m.mu.Unlock()
	if restart {
		m.watchRestarts.Inc()
	}
}

// apiError counts a failed request of op.
func (m *Metrics) apiError(ctx context.Context, op string, err error) {
	if err != nil {
		m.apiErrors.WithLabelValues(op, errorCode(ctx, err)).Inc()
	}
}

// stateCollector reads the election's State at every scrape, so that the
// gauges agree with one another and with /status.
type stateCollector struct {
	m     *Metrics
	lease string
}

var (
	masterStatusDesc = prometheus.NewDesc("leader_election_master_status",
		"Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. "+
			"'name' is the string used to identify the lease. Please make sure to group by name. "+
			"Master: this replica holds the Lease and its renew deadline has not passed.", []string{"name"}, nil)
	isLeaderDesc = prometheus.NewDesc("leader_elector_is_leader",
		"1 while this replica leads (it holds the Lease and its renew deadline has not passed), else 0.", nil, nil)
	leaseTransitionsDesc = prometheus.NewDesc("leader_elector_lease_transitions",
		"The Lease's spec.leaseTransitions as last observed: it grows with every change of holder (a fencing token). "+
			"Absent before the Lease was first read.", nil, nil)
	observedAgeDesc = prometheus.NewDesc("leader_elector_lease_observed_age_seconds",
		"Seconds since this replica last read the Lease or received a watch event for it. Absent before the first.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- masterStatusDesc
	ch <- isLeaderDesc
	ch <- leaseTransitionsDesc
	ch <- observedAgeDesc
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.m.cfg.State()
	now := c.m.clock.Now()
	leading := 0.0
	if s.IsLeader && now.Before(s.LeadUntil) {
		leading = 1
	}
	ch <- prometheus.MustNewConstMetric(masterStatusDesc, prometheus.GaugeValue, leading, c.lease)
	ch <- prometheus.MustNewConstMetric(isLeaderDesc, prometheus.GaugeValue, leading)
	if !s.LastObserved.IsZero() {
		ch <- prometheus.MustNewConstMetric(leaseTransitionsDesc, prometheus.GaugeValue, float64(s.Transitions))
		ch <- prometheus.MustNewConstMetric(observedAgeDesc, prometheus.GaugeValue, max(now.Sub(s.LastObserved).Seconds(), 0))
	}
}
