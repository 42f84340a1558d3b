package sidecar

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"k8s.io/apimachinery/pkg/types"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/inputs/apphealth"
	"github.com/leader-elector/leader-elector/internal/inputs/takeover"
	"github.com/leader-elector/leader-elector/internal/memtrim"
	"github.com/leader-elector/leader-elector/internal/outputs/eventrecorder"
	"github.com/leader-elector/leader-elector/internal/outputs/gatekeeper"
	"github.com/leader-elector/leader-elector/internal/outputs/leaderhttp"
	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
	"github.com/leader-elector/leader-elector/internal/succession"
	"github.com/leader-elector/leader-elector/labeler"
)

// Output is one part of the sidecar: an output that follows leadership,
// such as the status file or the role label, an input of the election, such
// as the app's health, or a server. Each is a package of its own, and parts
// lists them in the order they act. Every func is optional.
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
	// Open, in order, before the election starts, binds what Run serves or
	// removes what must not outlive the last run, so that a taken port
	// stops the sidecar before it campaigns. Its close undoes it when a
	// later Open fails; nil: nothing to undo.
	Open func() (close func(), err error)
}

// part is one entry of the list of parts: New builds it when on.
type part struct {
	name  string
	on    bool
	build func() (Output, error)
}

// parts lists the sidecar's parts in the order they act: Open before the
// election, Lead once the Lease is won and Follow once leadership ended, each
// in this order. The reason for each place is beside it; parts without Lead
// or Follow act apart from leadership, and their place orders only Open.
func (s *Sidecar) parts() []part {
	c := s.cfg
	return []part{
		// First: its Open removes a file left by an earlier run, which would
		// claim leadership; its Lead ends the handover (the app sees the
		// file), and its Follow comes first so that the app stops acting as
		// leader before anything else happens.
		{"status file", true, s.statusFilePart},
		// The servers bind before the election: a taken port stops the
		// sidecar before it campaigns. Metrics first, as its own listener.
		{"metrics server", c.MetricsAddr != "", s.metricsServerPart},
		{"health server", s.deps.Health != nil || c.HealthAddress() != "", s.healthServerPart},
		// Restores the file while leading; watching before anything can be
		// published, and after the servers, whose Open may fail: its own
		// never does.
		{"status file watch", s.file.Path() != "", s.statusWatchPart},
		// Right after the file: the handover it times ends when the file is
		// published.
		{"metrics", true, func() (Output, error) { return Output{Lead: s.metrics.Lead, Observe: s.metrics.Observe}, nil }},
		// After the file: it exists once the command starts. Before the
		// label: stepping down, stopping the command is what may take
		// Follow's whole RETRY_PERIOD, and it matters more than the label,
		// which the next leader repairs.
		{"command", len(c.Command) > 0, s.commandPart},
		{"status endpoint", c.StatusEndpoint != "", func() (Output, error) { return Output{Run: s.serveStatusEndpoint}, nil }},
		// After the file: the Service routes to a leader that knows it
		// leads; its Lead is asynchronous.
		{"role label", c.LabelPodRole, s.labelPart},
		{"leader API", true, s.leaderAPIPart},
		// After the label, as its other way to route the Service.
		{"service slice", c.ServiceName != "", s.slicePart},
		// Once the own pod is being deleted, it retires from the election,
		// which steps down through the parts above in their order; its
		// Lead and Follow only start and end its watch.
		{"handover on deletion", c.HandoverOnDelete && c.PodName != "", s.successionPart},
		// Checks the app from the start, before the election runs.
		{"app health", c.AppHealth.Enabled(), s.appHealthPart},
		{"control socket", true, s.controlPart},
		// Last: "became leader" once every other output followed, "stopped
		// leading" once the app was told. Neither waits for the write.
		{"events", c.Events && s.deps.Events != nil, s.eventsPart},
	}
}

func (s *Sidecar) statusFilePart() (Output, error) {
	return Output{Lead: s.publish, Follow: s.withdraw, Withdraws: true,
		Open: func() (func(), error) { return nil, s.file.RemoveStale() }}, nil
}

// statusWatchPart restores a deleted or changed status file while leading.
// A directory that cannot be watched is no reason to stop: the first write
// then fails and the replica does not lead.
func (s *Sidecar) statusWatchPart() (Output, error) {
	var restore func(ctx context.Context) error
	return Output{
		Open: func() (func(), error) {
			if !s.watchStatusDir || s.file.Path() == "" {
				return nil, nil
			}
			w, err := s.file.Watch()
			if err != nil {
				s.fileErr.Note(fmt.Errorf("a deleted or changed status file will not be restored: %w", err))
				return nil, nil
			}
			restore = func(ctx context.Context) error { return w.Run(ctx, s.fileLost) }
			return nil, nil
		},
		Run: func(ctx context.Context) error {
			if restore == nil {
				<-ctx.Done()
				return nil
			}
			return restore(ctx)
		},
	}, nil
}

// commandPart runs cfg.Command while this replica leads.
func (s *Sidecar) commandPart() (Output, error) {
	g, err := gatekeeper.New(gatekeeper.Config{Command: s.cfg.Command, StopGrace: s.cfg.CommandStopGrace,
		// The command inherits the sidecar's standard streams, as a
		// container's main process would have them.
		Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Clock: s.clk, Log: s.log})
	if err != nil {
		return Output{}, err
	}
	s.command = g
	return Output{Lead: g.Lead, Follow: g.Follow, Run: g.Run}, nil
}

func (s *Sidecar) labelPart() (Output, error) {
	if s.deps.Pods == nil {
		return Output{}, errors.New("sidecar: Deps.Pods is required with LABEL_POD_ROLE=true")
	}
	var err error
	s.labels, err = labeler.New(labeler.Config{Pods: s.deps.Pods, Pod: s.cfg.PodName, Key: s.cfg.RoleLabelKey,
		PeerSelector: s.cfg.PeerSelector, Clock: s.clk, Leading: s.leading, OnError: s.metrics.LabelError,
		OnRepair: s.labelRepaired, Log: s.log})
	if err != nil {
		return Output{}, err
	}
	return Output{Lead: s.labelLeader, Follow: s.labelFollower, Run: s.labels.Run}, nil
}

// successionPart hands the Lease over when the own pod is being deleted.
func (s *Sidecar) successionPart() (Output, error) {
	if s.deps.Pods == nil {
		return Output{}, errors.New("sidecar: Deps.Pods is required with HANDOVER_ON_DELETE=true and POD_NAME")
	}
	var err error
	s.succession, err = succession.New(succession.Config{Pods: s.deps.Pods, Pod: s.cfg.PodName, ByPodName: s.cfg.Identity == s.cfg.PodName,
		PeerSelector: s.cfg.Peers, Retire: s.retire,
		Synced: s.trimMemory, Clock: s.clk, Log: s.log})
	if err != nil {
		return Output{}, err
	}
	succ := s.succession
	return Output{
		Lead:   func(context.Context, election.State) error { succ.SetLeading(true); return nil },
		Follow: func(context.Context, election.State) error { succ.SetLeading(false); return nil },
		Run:    succ.Run,
	}, nil
}

// retire retires from the election on the own pod's deletion, handing the
// Lease to the pod named to, at podIP, with this replica's port.
func (s *Sidecar) retire(ctx context.Context, to, podIP string) error {
	return s.elector.Retire(ctx, election.Successor{Identity: to, Address: takeover.PeerAddress(s.address, podIP)})
}

// trimMemory hands back to the kernel what a leader's first list of the
// pods took: the freed heap (a list of 200 pods decodes megabytes) and the
// pages of the binary that the informer's first run touched (see memtrim).
// Without it the leader's resident memory grew by 6 MiB at 200 replicas.
func (s *Sidecar) trimMemory() {
	debug.FreeOSMemory()
	if _, err := memtrim.Release(); err != nil {
		s.log.Debug("could not release memory after the pod informer's first list", "err", err)
	}
}

func (s *Sidecar) leaderAPIPart() (Output, error) {
	var err error
	s.leaders, err = leaderhttp.New(leaderhttp.Config{State: s.state, Clock: s.clk, Log: s.log})
	if err != nil {
		return Output{}, err
	}
	return Output{Observe: s.leaders.Observe, Run: s.serveLeaders}, nil
}

// slicePart points SERVICE_NAME at the leader with an EndpointSlice.
func (s *Sidecar) slicePart() (Output, error) {
	c, d := s.cfg, s.deps
	if d.Slices == nil || d.Services == nil {
		return Output{}, errors.New("sidecar: Deps.Slices and Deps.Services are required with SERVICE_NAME")
	}
	var err error
	s.slice, err = serviceslice.New(serviceslice.Config{Slices: d.Slices, Services: d.Services, Endpoints: d.Endpoints,
		Namespace: c.ServiceNamespace, Service: c.ServiceName, Ports: c.Ports, PodIP: c.PodIP,
		Pod: c.PodName, PodNamespace: c.Namespace, NodeName: c.NodeName, Identity: c.Identity,
		Leading: s.leading, Clock: s.clk, Log: s.log})
	if err != nil {
		return Output{}, err
	}
	return Output{Lead: s.slice.Lead, Follow: s.slice.Follow, Run: s.slice.Run}, nil
}

// appHealthPart checks the app (APP_HEALTH_URL or APP_HEALTH_FILE) and
// tells the election every change.
func (s *Sidecar) appHealthPart() (Output, error) {
	a := s.cfg.AppHealth
	chk, err := apphealth.New(apphealth.Config{URL: a.URL, File: a.File, MaxAge: a.FileMaxAge, Period: a.Period,
		Timeout: a.Timeout, Failures: a.Failures, Successes: a.Successes, Clock: s.clk, Log: s.log.With("output", "app health")})
	if err != nil {
		return Output{}, fmt.Errorf("app health: %w", err)
	}
	s.appHealth = chk
	return Output{Run: func(ctx context.Context) error {
		chk.Run(ctx, func(healthy bool, reason string) { s.elector.ReportAppHealth(healthy, reason) })
		return nil // Run returns only once ctx ended: the sidecar stops, which is no failure
	}}, nil
}

// controlPart answers `leader-elector resign` on CONTROL_SOCKET, if set.
func (s *Sidecar) controlPart() (Output, error) {
	if s.cfg.ControlSocket == "" {
		s.log.Info("no control socket: leader-elector resign will not reach this sidecar", "reason", s.cfg.ControlSocketOff)
		return Output{}, nil
	}
	return Output{Run: s.serveControl}, nil
}

func (s *Sidecar) eventsPart() (Output, error) {
	c := s.cfg
	var err error
	s.events, err = eventrecorder.New(eventrecorder.Config{Sink: s.deps.Events, Namespace: c.Namespace, Lease: c.LeaseName,
		LeaseUID: s.lock.UID, Identity: c.Identity, Pod: c.PodName, PodUID: types.UID(c.PodUID), Log: s.log})
	if err != nil {
		return Output{}, err
	}
	return Output{Lead: s.events.Lead, Follow: s.events.Follow, Run: s.events.Run}, nil
}
