// Package sidecar assembles the leader-elector sidecar from its parts: the
// election decides, and the outputs (the status file, the role label, ...)
// follow it in a fixed order, while the health endpoints report on all of it.
//
// The rules that matter most live in small named methods: onStarted and
// onStopped (the order in which outputs follow leadership), live and ready
// (what the probes mean) and report (/status).
package sidecar

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/health"
	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/inputs/apphealth"
	"github.com/leader-elector/leader-elector/internal/inputs/nudge"
	"github.com/leader-elector/leader-elector/internal/lasterr"
	"github.com/leader-elector/leader-elector/internal/leasestore"
	"github.com/leader-elector/leader-elector/internal/outputs/eventrecorder"
	"github.com/leader-elector/leader-elector/internal/outputs/gatekeeper"
	"github.com/leader-elector/leader-elector/internal/outputs/leaderhttp"
	"github.com/leader-elector/leader-elector/internal/outputs/metrics"
	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
	"github.com/leader-elector/leader-elector/labeler"
	"github.com/leader-elector/leader-elector/status"
)

// Deps are what the sidecar talks to. Tests pass fakes.
type Deps struct {
	// Leases is the Lease API of the configured namespace. Required.
	Leases leasestore.Leases
	// Pods is the pod API of that namespace. Required with LabelPodRole.
	Pods labeler.Pods
	// Slices, Services and Endpoints are the APIs of SERVICE_NAMESPACE;
	// Slices and Services are required with SERVICE_NAME.
	Slices    serviceslice.Slices
	Services  serviceslice.Services
	Endpoints serviceslice.Endpoints
	// Clock is the source of time; clock.RealClock{} when nil.
	Clock clock.WithTickerAndDelayedExecution
	// Log receives the sidecar's log; slog.Default() when nil.
	Log *slog.Logger
	// Health is where the health endpoints are served; nil: Run listens on
	// the configured HEALTH_PORT.
	Health net.Listener
	// Metrics is where /metrics is served if METRICS_ADDRESS is set; nil:
	// Run listens on that address.
	Metrics net.Listener
	// Version is shown in the log and in /status.
	Version string
	// StartupDone, when set, is called once, in a goroutine of its own, at
	// the election's first change of State (the first leader observed, or
	// this replica leading): start-up is over.
	StartupDone func()
	// LeaderHTTP is where the NAIS leader API is served; nil: Run listens on
	// LEADER_HTTP_ADDRESS, if set.
	LeaderHTTP net.Listener
	// Events writes the Kubernetes Events (with EVENTS=true); nil: none.
	Events eventrecorder.Sink
}

// Output is one thing that follows leadership, such as the status file or
// the role label: each is a package of its own, and New lists them in the
// order they act. Every func is optional.
type Output struct {
	// Name names the output in logs and errors.
	Name string
	// Lead runs, in order, once the Lease was won. An error gives the Lease
	// back. Its context ends at the renew deadline; renewals wait for it.
	Lead func(ctx context.Context, s election.State) error
	// Follow runs, in order, once leadership ended and before the Lease is
	// released. Its context ends after RETRY_PERIOD.
	Follow func(ctx context.Context, s election.State) error
	// Withdraws marks the outputs through which the app learns it leads
	// (the status file): while their Follow fails, the app may still act
	// as leader, so the election keeps the Lease and hands it to no one,
	// and their Follow alone is retried until it succeeds.
	Withdraws bool
	// Run does the output's background work until ctx ends, which is after
	// the election ended. An earlier return, with or without an error, ends
	// the election (stepping down as usual) and Run's result.
	Run func(ctx context.Context) error
	// Observe is called with every change of the election's State (leader,
	// transitions, IsLeader), in the election's goroutine: it must not block.
	Observe func(s election.State)
}

// Sidecar is one assembled sidecar. Create it with New, start it with Run.
type Sidecar struct {
	cfg         config.Config
	deps        Deps
	log         *slog.Logger
	clk         clock.WithTickerAndDelayedExecution
	file        *status.File
	fileErr     *lasterr.Tracker // the status file's latest error, logged once
	writable    func() error     // the status directory's check, at most once per writableEvery
	labels      *labeler.Labeler // nil unless LabelPodRole
	leaders     *leaderhttp.Hub  // the leader API: LEADER_HTTP_ADDRESS, /leader, /watch
	elector     *election.Elector
	command     *gatekeeper.Gatekeeper // nil without a command
	slice       *serviceslice.Writer   // nil unless SERVICE_NAME
	metrics     *metrics.Metrics
	events      *eventrecorder.Recorder // nil without EVENTS or Deps.Events
	appHealth   *apphealth.Checker      // nil without APP_HEALTH_URL or APP_HEALTH_FILE
	outputs     []Output
	unwithdrawn []Output // the Withdraws outputs whose Follow failed; election loop only
	startupDone sync.Once
	// watchStatusDir is off only in tests that run in a synctest bubble,
	// where fsnotify's reader, blocked in the kernel, would stop time.
	watchStatusDir bool
}

// New builds the sidecar's parts from cfg. It does nothing yet: Run does.
func New(cfg config.Config, d Deps) (*Sidecar, error) {
	if d.Leases == nil {
		return nil, errors.New("sidecar: Deps.Leases is required")
	}
	if d.Clock == nil {
		d.Clock = clock.RealClock{}
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	path, err := status.Resolve(cfg.StatusFile, cfg.StatusDir)
	if err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, deps: d, log: d.Log, clk: d.Clock, file: status.New(path, d.Log), watchStatusDir: true}
	s.writable = s.file.WritableEvery(d.Clock, writableEvery)
	if d, err = s.instrument(d); err != nil {
		return nil, err
	}
	s.fileErr = lasterr.New(d.Log, "status file error", "status file recovered").OnError(s.metrics.StatusFileError)
	s.outputs = append(s.outputs, Output{Name: "status file", Lead: s.publish, Follow: s.withdraw, Withdraws: true})
	// Right after the file: the handover ends when the file is published.
	s.outputs = append(s.outputs, Output{Name: "metrics", Lead: s.metrics.Lead, Observe: s.metrics.Observe})
	if len(cfg.Command) > 0 { // after the file: it exists once the command starts
		if err := s.addCommand(); err != nil {
			return nil, err
		}
	}
	if cfg.StatusEndpoint != "" {
		s.outputs = append(s.outputs, Output{Name: "status endpoint", Run: s.serveStatusEndpoint})
	}
	lock := leasestore.New(d.Leases, cfg.Namespace, cfg.LeaseName, cfg.RetryPeriod, d.Clock, d.Log)
	if cfg.Events && d.Events != nil {
		s.events, err = eventrecorder.New(eventrecorder.Config{Sink: d.Events, Namespace: cfg.Namespace, Lease: cfg.LeaseName,
			LeaseUID: lock.UID, Identity: cfg.Identity, Pod: cfg.PodName, PodUID: types.UID(cfg.PodUID), Logger: d.Log})
		if err != nil {
			return nil, err
		}
	}
	if cfg.LabelPodRole {
		if d.Pods == nil {
			return nil, errors.New("sidecar: Deps.Pods is required with LABEL_POD_ROLE=true")
		}
		s.labels, err = labeler.New(labeler.Config{Pods: d.Pods, Pod: cfg.PodName, Key: cfg.RoleLabelKey,
			PeerSelector: cfg.PeerSelector, Clock: d.Clock, Leading: s.leading, OnError: s.metrics.LabelError, OnRepair: s.labelRepaired, Logger: d.Log})
		if err != nil {
			return nil, err
		}
		s.outputs = append(s.outputs, Output{Name: "role label", Lead: s.labelLeader, Follow: s.labelFollower, Run: s.labels.Run})
	}
	s.leaders, err = leaderhttp.New(leaderhttp.Config{State: s.state, Clock: d.Clock, Log: d.Log})
	if err != nil {
		return nil, err
	}
	s.outputs = append(s.outputs, Output{Name: "leader API", Observe: s.leaders.Observe, Run: s.serveLeaders})
	if cfg.ServiceName != "" {
		if err := s.addServiceSlice(cfg, d); err != nil {
			return nil, err
		}
	}
	if cfg.AppHealth.Enabled() {
		if err := s.addAppHealth(); err != nil {
			return nil, err
		}
	}
	if cfg.ControlSocket != "" {
		s.outputs = append(s.outputs, Output{Name: "control socket", Run: s.serveControl})
	} else {
		d.Log.Info("no control socket: leader-elector resign will not reach this sidecar", "reason", cfg.ControlSocketOff)
	}
	// Tells the next leader to read the Lease at once after a handover; its
	// Run keeps the process up until the nudge was sent or timed out.
	nudges := nudge.NewSender(nudge.Options{Log: d.Log})
	s.outputs = append(s.outputs, Output{Name: "nudge", Run: nudges.Run})
	listen := cfg.HealthAddress()
	if d.Health != nil {
		listen = d.Health.Addr().String()
	}
	// Signs this process's take-over offers; its public half goes into the
	// Lease while it leads. A new one per process: nothing to store.
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate the take-over key: %w", err)
	}
	if s.events != nil {
		// Last: "became leader" once every other output followed, "stopped
		// leading" once the app was told. Neither waits for the write.
		s.outputs = append(s.outputs, Output{Name: "events", Lead: s.events.Lead, Follow: s.events.Follow, Run: s.events.Run})
	}
	s.elector, err = election.New(election.Config{
		Lock:          lock,
		Identity:      cfg.Identity,
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		Clock:         d.Clock,
		Logger:        d.Log,
		Callbacks: election.Callbacks{OnStartedLeading: s.onStarted, OnStoppedLeading: s.onStopped, OnChange: s.onChange,
			Nudge: nudges.Nudge, HandOff: nudges.HandOff},
		UID:       cfg.PodUID,
		AppHealth: cfg.AppHealth.Enabled(),
		MinTerm:   cfg.AppHealth.MinTerm,
		Address:   nudge.Address(cfg.PodIP, listen),
		Key:       key,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Run runs the sidecar until ctx ends, then steps down, releases the Lease
// and returns. It returns an error when a part failed.
func (s *Sidecar) Run(ctx context.Context) error {
	// First of all: a file left by an earlier run would claim leadership.
	if err := s.file.RemoveStale(); err != nil {
		return err
	}
	msrv, err := s.serveMetrics()
	if err != nil {
		return err
	}
	srv, err := s.serveHealth()
	if err != nil {
		if msrv != nil {
			_ = msrv.Close()
		}
		return err
	}
	var helpers []Output
	if srv != nil {
		helpers = append(helpers, Output{Name: "health server", Run: srv.Serve})
	}
	helpers = append(helpers, s.outputs...)
	if msrv != nil {
		helpers = append(helpers, Output{Name: "metrics server", Run: msrv.Serve})
	}
	// Watch the status file's directory before anything can be published. A
	// directory that cannot be watched is no reason to stop: the first write
	// then fails and the replica does not lead.
	if s.watchStatusDir && s.file.Path() != "" {
		if w, err := s.file.Watch(); err != nil {
			s.fileErr.Note(fmt.Errorf("a deleted or changed status file will not be restored: %w", err))
		} else {
			helpers = append(helpers, Output{Name: "status file watch", Run: func(ctx context.Context) error {
				return w.Run(ctx, s.fileLost)
			}})
		}
	}
	s.log.Info("starting leader-elector", "version", s.deps.Version, "identity", s.cfg.Identity,
		"lease", s.cfg.Namespace+"/"+s.cfg.LeaseName, "status_file", s.file.Path(), "label_pod_role", s.cfg.LabelPodRole,
		"lease_duration", s.cfg.LeaseDuration, "renew_deadline", s.cfg.RenewDeadline, "retry_period", s.cfg.RetryPeriod)

	// The helpers outlive the election, so that stepping down at the end can
	// still remove the file and write the label; one that stops early ends
	// the election.
	electionCtx, endElection := context.WithCancelCause(ctx)
	defer endElection(nil)
	helperCtx, stopHelpers := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHelpers()
	var g errgroup.Group
	for _, o := range helpers {
		if o.Run != nil {
			g.Go(func() error { return s.runHelper(helperCtx, o, endElection) })
		}
	}
	_ = s.elector.Run(electionCtx) // it retries its errors and reports them in State
	stopHelpers()
	err = g.Wait()
	s.log.Info("leader-elector stopped")
	return err
}

// runHelper runs o until ctx ends; an earlier end stops the election.
func (s *Sidecar) runHelper(ctx context.Context, o Output, endElection context.CancelCauseFunc) error {
	err := o.Run(ctx)
	if ctx.Err() != nil {
		return err // stopped with the sidecar
	}
	if err == nil {
		err = errors.New("stopped unexpectedly")
	}
	err = fmt.Errorf("%s: %w", o.Name, err)
	if exit := (*gatekeeper.ExitError)(nil); errors.As(err, &exit) && exit.Code == 0 {
		s.log.Info("the command exited; stepping down and exiting", "err", err)
	} else {
		s.log.Error("a part of the sidecar failed; stepping down and exiting", "err", err)
	}
	endElection(err)
	return err
}

// streamsOff is what a stream or long-poll on the health listener is told
// without HEALTH_STREAMS=true.
const streamsOff = "event streams (GET /watch) and long-polls (GET /leader?wait=) are off on the health listener, which anyone on the pod network may reach: set HEALTH_STREAMS=true on the sidecar to serve them"

// handler serves the probes, /status, and the leader API's /leader and, with
// HEALTH_STREAMS, its long-poll and /watch.
func (s *Sidecar) handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", health.Handler(health.Checks{Live: s.live, Ready: s.ready, Status: func() any { return s.report() },
		Extra: s.metricsOnHealth()}))
	leaders := s.leaders.Handler()
	if !s.cfg.HealthStreams {
		leaders = s.leaders.HandlerWithoutStreams(streamsOff)
	}
	mux.Handle("GET /leader", leaders)
	mux.Handle("GET /watch", leaders)
	mux.Handle("POST "+nudge.Path, nudge.Handler(s.elector))
	mux.Handle("POST "+nudge.TakeOverPath, nudge.TakeOverHandler(s.elector))
	return mux
}

// serveLeaders runs the leader API, on LEADER_HTTP_ADDRESS too when set.
func (s *Sidecar) serveLeaders(ctx context.Context) error {
	ln := s.deps.LeaderHTTP
	if ln == nil && s.cfg.LeaderHTTPAddress != "" {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.LeaderHTTPAddress); err != nil {
			return fmt.Errorf("LEADER_HTTP_ADDRESS=%s: %w", s.cfg.LeaderHTTPAddress, err)
		}
	}
	return s.leaders.Run(ctx, ln)
}

// serveHealth listens for the health endpoints; nil without an address
// (PROBE_ADDRESS=-).
func (s *Sidecar) serveHealth() (*health.Server, error) {
	if s.deps.Health == nil && s.cfg.HealthAddress() == "" {
		return nil, nil
	}
	h := s.handler()
	if s.deps.Health != nil {
		return health.Serve(s.deps.Health, h, s.log), nil
	}
	srv, err := health.Listen(s.cfg.HealthAddress(), h, s.log)
	if err != nil && s.cfg.ProbeAddress != "" {
		return nil, fmt.Errorf("PROBE_ADDRESS=%q: %w", s.cfg.ProbeAddress, err)
	} else if err != nil {
		return nil, fmt.Errorf("HEALTH_PORT=%d: %w", s.cfg.HealthPort, err)
	}
	return srv, nil
}

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

// addServiceSlice adds the EndpointSlice writer of SERVICE_NAME.
func (s *Sidecar) addServiceSlice(cfg config.Config, d Deps) error {
	if d.Slices == nil || d.Services == nil {
		return errors.New("sidecar: Deps.Slices and Deps.Services are required with SERVICE_NAME")
	}
	ports, err := config.ParseServicePorts(cfg.ServicePorts)
	if err != nil {
		return fmt.Errorf("SERVICE_PORTS: %w", err)
	}
	s.slice, err = serviceslice.New(serviceslice.Config{Slices: d.Slices, Services: d.Services, Endpoints: d.Endpoints,
		Namespace: cfg.ServiceNamespace, Service: cfg.ServiceName, Ports: ports, PodIP: cfg.PodIP,
		Pod: cfg.PodName, PodNamespace: cfg.Namespace, NodeName: cfg.NodeName, Identity: cfg.Identity,
		Leading: s.leading, Clock: d.Clock, Logger: d.Log})
	if err != nil {
		return err
	}
	s.outputs = append(s.outputs, Output{Name: "service slice", Lead: s.slice.Lead, Follow: s.slice.Follow, Run: s.slice.Run})
	return nil
}

// leading is the election's Leading, for outputs built before the elector.
func (s *Sidecar) leading() bool { return s.elector.Leading() }

// state is the election's State, for outputs built before the elector.
func (s *Sidecar) state() election.State { return s.elector.State() }

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
	Withdrawing string          `json:"withdrawing,omitempty"`
	Label       *labeler.Status `json:"label,omitempty"`
	Goroutines  int             `json:"goroutines"`
	Version     string          `json:"version"`

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
