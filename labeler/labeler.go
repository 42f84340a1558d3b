// Package labeler keeps this pod's role label (role=leader or role=follower)
// in step with its leadership, so that a Service selecting role=leader routes
// to the leader only.
//
// Order of steps, which keeps such a Service from ever naming two pods:
//   - becoming leader: demote every peer that still says role=leader (a peer
//     that died while leading keeps its label), then label this pod leader;
//   - while leading: watch the peers, demote any peer that says leader, and
//     put the own label back if anyone removes or changes it;
//   - stepping down: end the leader's work at once (its in-flight requests
//     are cancelled), then label this pod follower before the Lease is
//     released, and report when that fails, in the log and in Status.
//
// A follower makes no requests. Peers are the pods matching the peer
// selector, by default the own pod's app.kubernetes.io/name (or else app)
// label together with its app.kubernetes.io/instance and
// app.kubernetes.io/component labels, those of them it has. Pods outside it
// are never touched, and a peer is only demoted if it has not changed since
// it was read.
package labeler

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/internal/lasterr"
	"github.com/leader-elector/leader-elector/internal/leaderterm"
	peerpods "github.com/leader-elector/leader-elector/internal/peers"
)

// Role is the value of the role label.
type Role string

// The two roles.
const (
	Leader   Role = "leader"
	Follower Role = "follower"
)

// Pods is what the labeler needs of the pods API; client-go's
// corev1.PodInterface has it, and so does the sidecar's kubeclient.Pods.
type Pods interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error)
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Pod, error)
}

// Config configures a Labeler.
type Config struct {
	// Pods is the pods API of the pod's namespace.
	Pods Pods
	// Pod is this pod's name.
	Pod string
	// Key is the label key, such as "role".
	Key string
	// PeerSelector selects the pods that share the Lease. Empty: derived from
	// the own pod's labels by peers.DefaultSelector.
	PeerSelector string
	// Clock times the back-off between retries. Default: clock.RealClock{}.
	Clock clock.WithTicker
	// Leading, if set, is asked right before every patch of a leader term
	// (demoting a peer, labelling the own pod leader): false ends the term's
	// work at once, as if leadership had ended. The sidecar passes the
	// election's Leading, which turns false at the renew deadline, so a pod
	// frozen past it acts on no label when it resumes.
	Leading func() bool
	// OnError, if set, is called with every failed label write or pass,
	// for a counter.
	OnError func(error)
	// OnRepair, if set, is called after the leader changed a wrong role
	// label: a peer's stale leader label, or its own label that someone
	// removed or changed. It runs in the labeler's goroutine: it must not
	// block.
	OnRepair func(Repair)
	Log      *slog.Logger
}

// Repair is one role label the leader put right.
type Repair struct {
	// Pod and UID name the pod whose label was changed.
	Pod string
	UID types.UID
	// From is the value found (empty: no label), To the value written.
	From, To string
}

// Status is what the labeler reports.
type Status struct {
	// Role is the label last written on the own pod; empty before the first.
	Role Role `json:"role"`
	// Want is the role the labeler is working towards.
	Want Role `json:"want"`
	// PeerSelector is the selector used for stale-label repair; empty when
	// repair is off.
	PeerSelector string `json:"peer_selector"`
	// LastError is the latest error of a label write, empty once recovered.
	LastError string `json:"last_error,omitempty"`
	// Demoted counts peers set to follower because they said leader.
	Demoted int `json:"demoted"`
	// Restored counts the times this leader put its own label back after
	// someone removed or changed it.
	Restored int `json:"restored"`
	// Watching is true while this pod leads and its watch of the peers works,
	// so that wrong labels are repaired as they appear.
	Watching bool `json:"watching"`
	// WatchError is the latest error of that watch, empty once it works.
	WatchError string `json:"watch_error,omitempty"`
}

// Labeler writes the role label. Run must be running for Set and Demote to
// take effect.
type Labeler struct {
	cfg   Config
	log   *slog.Logger
	clock clock.WithTicker
	// errs tracks the label writes, watchErrs the leader's watch of its peers.
	errs, watchErrs *lasterr.Tracker

	// wish is the wish to lead, by generation, and its running term.
	wish *leaderterm.Wish

	mu      sync.Mutex
	applied int           // the wish's generation last written; -1: none yet
	done    chan struct{} // closed and replaced whenever applied changes
	status  Status
	finder  *peerpods.Finder
}

// New returns a Labeler for cfg. It starts by wanting follower.
func New(cfg Config) (*Labeler, error) {
	if cfg.Pods == nil || cfg.Pod == "" || cfg.Key == "" {
		return nil, fmt.Errorf("labeler config: Pods, Pod and Key are required")
	}
	var peers labels.Selector
	if cfg.PeerSelector != "" {
		s, err := labels.Parse(cfg.PeerSelector)
		if err != nil {
			return nil, fmt.Errorf("peer selector %q: %w", cfg.PeerSelector, err)
		}
		if s.Empty() {
			return nil, fmt.Errorf("peer selector %q selects every pod in the namespace: name the workload's labels", cfg.PeerSelector)
		}
		peers = s
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	log = log.With("pod", cfg.Pod, "label", cfg.Key)
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	l := &Labeler{cfg: cfg, log: log, clock: clk,
		errs:      lasterr.New(log, "role label error; election goes on", "role label recovered").OnError(cfg.OnError),
		watchErrs: lasterr.New(log, "cannot watch the peer pods; their labels are not repaired meanwhile", "watching the peer pods again"),
		wish:      leaderterm.NewWish(cfg.Leading), applied: -1, done: make(chan struct{}), finder: peerpods.NewFinder(cfg.Pods, cfg.Pod, peers)}
	l.status.Want = Follower
	if peers != nil {
		l.status.PeerSelector = peers.String()
	}
	return l, nil
}

// Set asks for role and returns at once; the latest request wins. Asking for
// follower ends the leader's work at once: its in-flight requests are
// cancelled and it sends no further patch.
func (l *Labeler) Set(role Role) {
	l.mu.Lock()
	l.status.Want = role
	l.mu.Unlock()
	l.wish.Set(role == Leader)
}

// Demote sets follower and waits until it is written or ctx ends.
func (l *Labeler) Demote(ctx context.Context) error {
	l.Set(Follower)
	for {
		_, gen := l.wish.Get()
		l.mu.Lock()
		applied, done := l.applied, l.done
		l.mu.Unlock()
		if applied >= gen {
			return nil
		}
		select {
		case <-done:
		case <-ctx.Done():
			// Read again: the errors that made us wait came after the snapshot.
			if lastErr := l.errs.Last(); lastErr != "" {
				return errors.New(lastErr) // it names the pod and the label already
			}
			return fmt.Errorf("label pod %s %s=%s: %w", l.cfg.Pod, l.cfg.Key, Follower, ctx.Err())
		}
	}
}

// Status reports the labeler's state.
func (l *Labeler) Status() Status {
	l.mu.Lock()
	s := l.status
	l.mu.Unlock()
	s.LastError = l.errs.Last()
	s.WatchError = l.watchErrs.Last()
	s.Watching = s.Watching && s.WatchError == ""
	return s
}

// Run writes the wanted role, retrying with back-off, until ctx ends. While
// leader is wanted it runs a leader term (see lead); the follower label is
// written only once that term has ended, so that it is sent after all of
// the term's requests. (A cancelled request may still land later; the next
// leader's watch demotes this pod then.)
func (l *Labeler) Run(ctx context.Context) error {
	backoff := leaderterm.Backoff(firstRetry)
	l.wish.Run(ctx, l.lead, func(ctx context.Context, gen int) bool {
		l.mu.Lock()
		applied := l.applied
		l.mu.Unlock()
		if applied >= gen {
			return true
		}
		sent := l.clock.Now()
		if _, err := l.patchOwn(ctx, Follower); err != nil {
			if ctx.Err() == nil {
				l.errs.Note(err)
				leaderterm.Sleep(ctx, l.clock, backoff.Step(), l.wish.Wake())
			}
			return false
		}
		backoff = leaderterm.Backoff(firstRetry)
		l.errs.Note(nil)
		l.log.Info("labelled pod", "role", Follower, "request", l.clock.Since(sent).Round(time.Millisecond))
		l.wrote(gen, Follower)
		return true
	})
	return nil
}

// firstRetry is the first wait of the retries' back-off.
const firstRetry = 200 * time.Millisecond

// wrote records that role was written for the wish of generation gen.
func (l *Labeler) wrote(gen int, role Role) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status.Role = role
	if gen > l.applied {
		l.applied = gen
		close(l.done)
		l.done = make(chan struct{})
	}
}

// patchOwn writes role on the own pod.
func (l *Labeler) patchOwn(ctx context.Context, role Role) (*corev1.Pod, error) {
	p, err := l.cfg.Pods.Patch(ctx, l.cfg.Pod, types.MergePatchType, labelPatch(l.cfg.Key, role, ""), metav1.PatchOptions{})
	if err != nil {
		return nil, fmt.Errorf("label pod %s %s=%s: %w", l.cfg.Pod, l.cfg.Key, role, err)
	}
	return p, nil
}

// peerSelector returns the selector of peers, deriving it from the own pod's
// labels the first time; nil means repair is off.
func (l *Labeler) peerSelector(ctx context.Context) (labels.Selector, error) {
	peers, first, err := l.finder.Selector(ctx)
	if err != nil || !first {
		return peers, err
	}
	if peers == nil {
		l.log.Warn("stale-label repair is off: the pod has no app.kubernetes.io/name or app label and PEER_SELECTOR is empty; only the own label is kept right")
	}
	l.mu.Lock()
	if peers != nil {
		l.status.PeerSelector = peers.String()
	}
	l.mu.Unlock()
	return peers, nil
}

// labelPatch is a merge patch of one label, with an optional
// resourceVersion precondition.
func labelPatch(key string, role Role, resourceVersion string) []byte {
	meta := map[string]any{"labels": map[string]string{key: string(role)}}
	if resourceVersion != "" {
		meta["resourceVersion"] = resourceVersion
	}
	b, _ := json.Marshal(map[string]any{"metadata": meta}) // maps of strings always marshal
	return b
}
