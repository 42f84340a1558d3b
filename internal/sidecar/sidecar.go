// Package sidecar assembles the leader-elector sidecar from its parts: the
// election decides, and the outputs (the status file, the role label, ...)
// follow it in a fixed order, while the health endpoints report on all of it.
//
// parts (parts.go) is the one ordered list of the parts, with the reason for
// each place; New builds them and Run opens and runs them. The rules that
// matter most live in small named methods: onStarted and onStopped (the
// order in which outputs follow leadership), live and ready (what the probes
// mean) and report (/status).
package sidecar

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/inputs/apphealth"
	"github.com/leader-elector/leader-elector/internal/inputs/takeover"
	"github.com/leader-elector/leader-elector/internal/lasterr"
	"github.com/leader-elector/leader-elector/internal/leasestore"
	"github.com/leader-elector/leader-elector/internal/outputs/eventrecorder"
	"github.com/leader-elector/leader-elector/internal/outputs/gatekeeper"
	"github.com/leader-elector/leader-elector/internal/outputs/leaderhttp"
	"github.com/leader-elector/leader-elector/internal/outputs/metrics"
	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
	"github.com/leader-elector/leader-elector/internal/succession"
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

// Sidecar is one assembled sidecar. Create it with New, start it with Run.
type Sidecar struct {
	cfg         config.Config
	deps        Deps // with the API clients counted by metrics
	log         *slog.Logger
	clk         clock.WithTickerAndDelayedExecution
	file        *status.File
	fileErr     *lasterr.Tracker // the status file's latest error, logged once
	writable    func() error     // the status directory's check, at most once per writableEvery
	lock        *leasestore.Store
	labels      *labeler.Labeler       // nil unless LabelPodRole
	succession  *succession.Succession // nil unless HANDOVER_ON_DELETE and POD_NAME
	leaders     *leaderhttp.Hub        // the leader API: LEADER_HTTP_ADDRESS, /leader, /watch
	elector     *election.Elector
	command     *gatekeeper.Gatekeeper // nil without a command
	slice       *serviceslice.Writer   // nil unless SERVICE_NAME
	metrics     *metrics.Metrics
	events      *eventrecorder.Recorder // nil without EVENTS or Deps.Events
	appHealth   *apphealth.Checker      // nil without APP_HEALTH_URL or APP_HEALTH_FILE
	offers      *takeover.Sender
	address     string // where this replica takes take-over offers; empty: nowhere
	outputs     []Output
	unwithdrawn []Output // the Withdraws outputs whose Follow failed; election loop only
	startupDone sync.Once
	// watchStatusDir is off only in tests that run in a synctest bubble,
	// where fsnotify's reader, blocked in the kernel, would stop time.
	watchStatusDir bool
}

// New builds the sidecar's parts from cfg, in the order of parts. It does
// nothing yet: Run does.
func New(cfg config.Config, d Deps) (*Sidecar, error) {
	if d.Leases == nil {
		return nil, errors.New("sidecar: Deps.Leases is required")
	}
	d.Clock = cmp.Or[clock.WithTickerAndDelayedExecution](d.Clock, clock.RealClock{})
	d.Log = cmp.Or(d.Log, slog.Default())
	path, err := status.Resolve(cfg.StatusFile, cfg.StatusDir)
	if err != nil {
		return nil, err
	}
	s := &Sidecar{cfg: cfg, log: d.Log, clk: d.Clock, file: status.New(path, d.Log), watchStatusDir: true}
	s.writable = s.file.WritableEvery(d.Clock, writableEvery)
	if err := s.instrument(d); err != nil {
		return nil, err
	}
	s.fileErr = lasterr.New(d.Log, "status file error", "status file recovered").OnError(s.metrics.StatusFileError)
	s.lock = leasestore.New(s.deps.Leases, cfg.Namespace, cfg.LeaseName, cfg.RetryPeriod, d.Clock, d.Log)
	listen := cfg.HealthAddress()
	if d.Health != nil {
		listen = d.Health.Addr().String()
	}
	s.address, s.offers = takeover.Address(cfg.PodIP, listen), takeover.NewSender(takeover.Options{})
	for _, p := range s.parts() {
		if !p.on {
			continue
		}
		o, err := p.build()
		if err != nil {
			return nil, err
		}
		o.Name = p.name
		s.outputs = append(s.outputs, o)
	}
	return s, s.newElector()
}

// newElector builds the election, which calls the parts back.
func (s *Sidecar) newElector() error {
	// Signs this process's take-over offers; its public half goes into the
	// Lease while it leads. A new one per process: nothing to store.
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return fmt.Errorf("generate the take-over key: %w", err)
	}
	c := s.cfg
	s.elector, err = election.New(election.Config{
		Lock: s.lock, Identity: c.Identity, Clock: s.clk, Log: s.log,
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod,
		Callbacks: election.Callbacks{OnStartedLeading: s.onStarted, OnStoppedLeading: s.onStopped, OnChange: s.onChange,
			HandOff: s.offers.HandOff},
		UID: c.PodUID, AppHealth: c.AppHealth.Enabled(), MinTerm: c.AppHealth.MinTerm,
		Address: s.address, Key: key,
	})
	return err
}

// instrument builds the metrics and counts the API calls of Deps' clients.
func (s *Sidecar) instrument(d Deps) error {
	m, err := metrics.New(metrics.Config{Lease: s.cfg.LeaseName, Identity: s.cfg.Identity, State: s.state, Clock: d.Clock})
	if err != nil {
		return err
	}
	s.metrics = m
	d.Leases = m.Leases(d.Leases)
	if d.Pods != nil {
		d.Pods = m.Pods(d.Pods)
	}
	s.deps = d
	return nil
}

// Run runs the sidecar until ctx ends, then steps down, releases the Lease
// and returns. It returns an error when a part failed.
func (s *Sidecar) Run(ctx context.Context) error {
	if err := s.open(); err != nil {
		return err
	}
	s.log.Info("starting leader-elector", "version", s.deps.Version, "identity", s.cfg.Identity,
		"lease", s.cfg.Namespace+"/"+s.cfg.LeaseName, "status_file", s.file.Path(), "label_pod_role", s.cfg.LabelPodRole,
		"lease_duration", s.cfg.LeaseDuration, "renew_deadline", s.cfg.RenewDeadline, "retry_period", s.cfg.RetryPeriod)

	// The parts outlive the election, so that stepping down at the end can
	// still remove the file and write the label; one that stops early ends
	// the election.
	electionCtx, endElection := context.WithCancelCause(ctx)
	defer endElection(nil)
	partsCtx, stopParts := context.WithCancel(context.WithoutCancel(ctx))
	defer stopParts()
	var g errgroup.Group
	for _, o := range s.outputs {
		if o.Run != nil {
			g.Go(func() error { return s.runHelper(partsCtx, o, endElection) })
		}
	}
	_ = s.elector.Run(electionCtx) // it retries its errors and reports them in State
	stopParts()
	err := g.Wait()
	s.log.Info("leader-elector stopped")
	return err
}

// open opens every part in order; when one fails, it closes those opened.
func (s *Sidecar) open() error {
	var closers []func()
	for _, o := range s.outputs {
		if o.Open == nil {
			continue
		}
		closeIt, err := o.Open()
		if err != nil {
			for _, c := range slices.Backward(closers) {
				c()
			}
			return err
		}
		if closeIt != nil {
			closers = append(closers, closeIt)
		}
	}
	return nil
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

// leading is the election's Leading, for outputs built before the elector.
func (s *Sidecar) leading() bool { return s.elector.Leading() }

// state is the election's State, for outputs built before the elector.
func (s *Sidecar) state() election.State { return s.elector.State() }
