// Package eventrecorder records the election's Kubernetes Events
// (events.k8s.io/v1) through client-go's tools/events broadcaster: "<identity>
// became leader" and "<identity> stopped leading", with reason LeaderElection
// as client-go's leaderelection writes them, regarding the Lease and related
// to the own pod, so that `kubectl describe lease` shows the history; and one
// event for every role label the leader repaired, regarding that pod.
//
// Recording never waits: the broadcaster queues events and writes them from
// goroutines of its own, retrying as client-go does, so a slow, failing or
// hanging API server cannot hold up the election. When Run's context ends,
// the events recorded so far get a short, bounded time to be written.
package eventrecorder

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	typedeventsv1 "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/klog/v2"

	"github.com/leader-elector/leader-elector/election"
)

// The events' fields. Reason and notes of the leadership events are those of
// client-go's leaderelection.
const (
	// ReportingController is the events' reportingController.
	ReportingController = "leader-elector"
	// ReasonLeaderElection is the reason of "became leader" and "stopped leading".
	ReasonLeaderElection = "LeaderElection"
	// ReasonRoleLabelRepaired is the reason of a repaired role label.
	ReasonRoleLabelRepaired = "RoleLabelRepaired"

	ActionBecameLeader      = "BecameLeader"
	ActionStoppedLeading    = "StoppedLeading"
	ActionRepairedRoleLabel = "RepairedRoleLabel"
)

// DefaultFlushTimeout is how long Run waits, once its context ended, for the
// events recorded until then to be written.
const DefaultFlushTimeout = 2 * time.Second

// Sink writes events; client-go's events.EventSinkImpl is one (see NewSink).
type Sink = events.EventSink

// NewSink returns the Sink that writes through an events.k8s.io/v1 client.
func NewSink(c typedeventsv1.EventsV1Interface) Sink { return &events.EventSinkImpl{Interface: c} }

// Config configures a Recorder.
type Config struct {
	// Sink writes the events. Required.
	Sink Sink
	// Namespace and Lease name the Lease. Required.
	Namespace, Lease string
	// LeaseUID returns the Lease's uid as last seen, or empty. Optional, but
	// without it `kubectl describe lease` does not find the events: it
	// selects them by uid too.
	LeaseUID func() types.UID
	// Identity is this candidate's identity, for the notes of repairs.
	Identity string
	// Pod and PodUID are the own pod, the events' related object; an empty
	// Pod leaves related out, an empty PodUID leaves its uid out.
	Pod    string
	PodUID types.UID
	// FlushTimeout bounds the wait for unwritten events when Run's context
	// ends; DefaultFlushTimeout when zero.
	FlushTimeout time.Duration
	Log          *slog.Logger
}

// Recorder records the election's events. Lead and Follow plug into the
// sidecar's Output of the same names, Run into its Run, and RoleLabelRepaired
// into the labeler's repair hook. All of them but Run return at once.
type Recorder struct {
	cfg         Config
	log         *slog.Logger
	sink        *countingSink
	broadcaster events.EventBroadcaster
	recorder    events.EventRecorder

	mu sync.Mutex
	// phase: recording starts with Run, and ends with it.
	phase   phase
	backlog []event // recorded before Run started
	// recorded counts the events handed to the broadcaster.
	recorded int
	// leading is set once "became leader" was recorded, so that "stopped
	// leading" is recorded only after it (a leadership given back because
	// the status file could not be written was never announced).
	leading bool
}

type phase int

const (
	notStarted phase = iota
	recording
	stopped
)

// event is one event to record.
type event struct {
	regarding, related   *corev1.ObjectReference
	eventType            string
	reason, action, note string
}

// maxBacklog bounds the events kept before Run starts: a handful at most
// can happen then.
const maxBacklog = 16

// New returns a Recorder for cfg. It records nothing until Run runs.
func New(cfg Config) (*Recorder, error) {
	if cfg.Sink == nil || cfg.Namespace == "" || cfg.Lease == "" {
		return nil, fmt.Errorf("eventrecorder config: Sink, Namespace and Lease are required")
	}
	if cfg.FlushTimeout <= 0 {
		cfg.FlushTimeout = DefaultFlushTimeout
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	sink := newCountingSink(cfg.Sink)
	b := events.NewBroadcaster(sink)
	// Every reference is an ObjectReference already, so the recorder needs
	// no types in its scheme.
	return &Recorder{cfg: cfg, log: log, sink: sink, broadcaster: b,
		recorder: b.NewRecorder(runtime.NewScheme(), ReportingController)}, nil
}

// Lead records "<identity> became leader". It returns at once.
func (r *Recorder) Lead(_ context.Context, s election.State) error {
	r.mu.Lock()
	r.leading = true
	r.mu.Unlock()
	r.record(event{regarding: r.lease(), related: r.pod(), eventType: corev1.EventTypeNormal,
		reason: ReasonLeaderElection, action: ActionBecameLeader, note: s.Identity + " became leader"})
	return nil
}

// Follow records "<identity> stopped leading", if "became leader" was
// recorded. It returns at once.
func (r *Recorder) Follow(_ context.Context, s election.State) error {
	r.mu.Lock()
	was := r.leading
	r.leading = false
	r.mu.Unlock()
	if was {
		r.record(event{regarding: r.lease(), related: r.pod(), eventType: corev1.EventTypeNormal,
			reason: ReasonLeaderElection, action: ActionStoppedLeading, note: s.Identity + " stopped leading"})
	}
	return nil
}

// RoleLabelRepaired records that the leader set the role label of pod (with
// uid, if known) to to, where it found from (empty: no label). It is a
// Warning regarding that pod: a stale label means a leader ended without
// relabelling its pod, or someone changed the label. It returns at once.
func (r *Recorder) RoleLabelRepaired(pod string, uid types.UID, from, to string) {
	if from == "" {
		from = "no label"
	}
	regarding := &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: r.cfg.Namespace, Name: pod, UID: uid}
	related := r.pod()
	if pod == r.cfg.Pod {
		related = nil // it is the regarding object
	}
	r.record(event{regarding: regarding, related: related, eventType: corev1.EventTypeWarning,
		reason: ReasonRoleLabelRepaired, action: ActionRepairedRoleLabel,
		note: fmt.Sprintf("%s set the role label of pod %s to %s (was %s)", r.cfg.Identity, pod, to, from)})
}

// lease is the Lease's reference.
func (r *Recorder) lease() *corev1.ObjectReference {
	ref := &corev1.ObjectReference{Kind: "Lease", APIVersion: "coordination.k8s.io/v1", Namespace: r.cfg.Namespace, Name: r.cfg.Lease}
	if r.cfg.LeaseUID != nil {
		ref.UID = r.cfg.LeaseUID()
	}
	return ref
}

// pod is the own pod's reference, or nil.
func (r *Recorder) pod() *corev1.ObjectReference {
	if r.cfg.Pod == "" {
		return nil
	}
	return &corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: r.cfg.Namespace, Name: r.cfg.Pod, UID: r.cfg.PodUID}
}

// record hands e to the broadcaster, which queues it and returns, or keeps
// it until Run starts.
func (r *Recorder) record(e event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.phase {
	case notStarted:
		if len(r.backlog) < maxBacklog {
			r.backlog = append(r.backlog, e)
		}
	case recording:
		r.emit(e)
	case stopped:
		r.log.Debug("event not recorded: the sidecar is stopping", "reason", e.reason, "note", e.note)
	}
}

// emit hands e to the broadcaster; r.mu is held.
func (r *Recorder) emit(e event) {
	r.recorded++
	var related runtime.Object
	if e.related != nil {
		related = e.related
	}
	// Eventf builds the event and queues it from a goroutine of its own.
	r.recorder.Eventf(e.regarding, related, e.eventType, e.reason, e.action, "%s", e.note)
}

// Run writes the recorded events until ctx ends, then waits at most
// Config.FlushTimeout for those not written yet, and stops.
func (r *Recorder) Run(ctx context.Context) error {
	// The writes outlive ctx by the flush; their errors go to our log.
	writeCtx, stopWrites := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), logr.FromSlogHandler(r.log.Handler())))
	defer stopWrites()
	if err := r.broadcaster.StartRecordingToSinkWithContext(writeCtx); err != nil {
		return fmt.Errorf("start recording events: %w", err)
	}
	r.mu.Lock()
	r.phase = recording
	for _, e := range r.backlog {
		r.emit(e)
	}
	r.backlog = nil
	r.mu.Unlock()

	<-ctx.Done()
	r.mu.Lock()
	r.phase = stopped
	recorded := r.recorded
	r.mu.Unlock()
	if !r.sink.waitWritten(recorded, r.cfg.FlushTimeout) {
		r.log.Warn("stopping with events not written", "waited", r.cfg.FlushTimeout)
	}
	stopWrites()
	r.broadcaster.Shutdown()
	return nil
}

// countingSink counts the writes to a Sink, so that Run can wait for the
// events recorded so far.
type countingSink struct {
	Sink
	mu       sync.Mutex
	started  int           // writes begun
	inFlight int           // writes not returned yet
	changed  chan struct{} // closed and replaced when a write returns
}

func newCountingSink(s Sink) *countingSink {
	return &countingSink{Sink: s, changed: make(chan struct{})}
}

func (s *countingSink) Create(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	defer s.begin()()
	return s.Sink.Create(ctx, e)
}

func (s *countingSink) Update(ctx context.Context, e *eventsv1.Event) (*eventsv1.Event, error) {
	defer s.begin()()
	return s.Sink.Update(ctx, e)
}

func (s *countingSink) Patch(ctx context.Context, e *eventsv1.Event, data []byte) (*eventsv1.Event, error) {
	defer s.begin()()
	return s.Sink.Patch(ctx, e, data)
}

// begin counts a write and returns the func that counts its return.
func (s *countingSink) begin() func() {
	s.mu.Lock()
	s.started++
	s.inFlight++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.inFlight--
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
	}
}

// waitWritten waits until n writes have begun and none is in flight, or
// timeout passes; it reports whether that happened. Each event is one write
// unless it fails and is retried (after 10s, longer than any flush), or it is
// the third of a series, which the broadcaster only counts: then waitWritten
// waits for the timeout.
func (s *countingSink) waitWritten(n int, timeout time.Duration) bool {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		s.mu.Lock()
		done, changed := s.started >= n && s.inFlight == 0, s.changed
		s.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-t.C:
			return false
		}
	}
}
