// Package labeler keeps this pod's role label (role=leader or role=follower)
// in step with its leadership, so that a Service selecting role=leader routes
// to the leader only.
//
// Order of steps, which keeps such a Service from ever naming two pods:
//   - becoming leader: demote every peer that still says role=leader (a peer
//     that died while leading keeps its label), then label this pod leader;
//   - stepping down: label this pod follower before the Lease is released, and
//     report when that fails, in the log and in Status.
//
// Peers are the pods matching the peer selector, by default the own pod's
// app.kubernetes.io/name or app label. Pods outside it are never touched, and
// a peer is only demoted if it has not changed since it was listed.
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
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Role is the value of the role label.
type Role string

// The two roles.
const (
	Leader   Role = "leader"
	Follower Role = "follower"
)

// Pods is what the labeler needs of the pods API; client-go's
// corev1.PodInterface has it.
type Pods interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error)
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
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
	// PeerSelector selects the pods that share the Lease. Empty: the own
	// pod's app.kubernetes.io/name or app label.
	PeerSelector string
	Logger       *slog.Logger
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
	// LastError is the latest error, empty once recovered.
	LastError string `json:"last_error,omitempty"`
	// Demoted counts stale peers set to follower.
	Demoted int `json:"demoted"`
}

// Labeler writes the role label. Run must be running for Set and Demote to
// take effect.
type Labeler struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	want    Role
	gen     int           // grows with every Set
	applied int           // the gen last written
	done    chan struct{} // closed and replaced whenever applied changes
	wake    chan struct{}
	status  Status
	peers   labels.Selector // nil: not resolved yet, or repair is off
	// peersResolved is set once the own pod's labels were read.
	peersResolved bool
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
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	l := &Labeler{cfg: cfg, log: log.With("pod", cfg.Pod, "label", cfg.Key), want: Follower, gen: 1,
		done: make(chan struct{}), wake: make(chan struct{}, 1), peers: peers}
	l.status.Want = Follower
	if peers != nil {
		l.status.PeerSelector = peers.String()
	}
	return l, nil
}

// Set asks for role and returns at once; the latest request wins.
func (l *Labeler) Set(role Role) {
	l.mu.Lock()
	if l.want != role {
		l.want, l.gen = role, l.gen+1
		l.status.Want = role
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Demote sets follower and waits until it is written or ctx ends.
func (l *Labeler) Demote(ctx context.Context) error {
	l.Set(Follower)
	for {
		l.mu.Lock()
		gen, applied, done := l.gen, l.applied, l.done
		l.mu.Unlock()
		if applied >= gen {
			return nil
		}
		select {
		case <-done:
		case <-ctx.Done():
			// Read again: the errors that made us wait came after the snapshot.
			if lastErr := l.Status().LastError; lastErr != "" {
				return errors.New(lastErr) // it names the pod and the label already
			}
			return fmt.Errorf("label pod %s %s=%s: %w", l.cfg.Pod, l.cfg.Key, Follower, ctx.Err())
		}
	}
}

// Status reports the labeler's state.
func (l *Labeler) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.status
}

// Run writes the wanted role, retrying with back-off, until ctx ends.
func (l *Labeler) Run(ctx context.Context) error {
	backoff := wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 10 * time.Second}
	for {
		l.mu.Lock()
		want, gen, applied := l.want, l.gen, l.applied
		l.mu.Unlock()
		if applied < gen {
			if err := l.apply(ctx, want); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				if errors.Is(err, errSuperseded) {
					continue // nothing was written; apply the new wish at once
				}
				l.noteError(err)
				if !l.sleep(ctx, backoff.Step()) {
					return nil
				}
				continue
			}
			backoff.Duration = 200 * time.Millisecond
			l.noteError(nil)
			l.mu.Lock()
			l.applied = gen
			l.status.Role = want
			close(l.done)
			l.done = make(chan struct{})
			l.mu.Unlock()
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.wake:
		}
	}
}

// sleep waits d, or less if a new role is asked for.
func (l *Labeler) sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-l.wake:
	}
	return true
}

// errSuperseded reports that apply wrote nothing because the role it was
// asked for is no longer wanted.
var errSuperseded = errors.New("role no longer wanted")

// apply writes role on the own pod; for leader it first demotes stale peers.
func (l *Labeler) apply(ctx context.Context, role Role) error {
	if role == Leader {
		if err := l.demotePeers(ctx); err != nil {
			return err
		}
		l.mu.Lock()
		still := l.want == Leader
		l.mu.Unlock()
		if !still {
			return errSuperseded // stepped down meanwhile; the next round writes follower
		}
	}
	if _, err := l.cfg.Pods.Patch(ctx, l.cfg.Pod, types.MergePatchType, labelPatch(l.cfg.Key, role, ""), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("label pod %s %s=%s: %w", l.cfg.Pod, l.cfg.Key, role, err)
	}
	l.log.Info("labelled pod", "role", role)
	return nil
}

// demotePeers sets follower on every other peer that says leader.
func (l *Labeler) demotePeers(ctx context.Context) error {
	peers, err := l.peerSelector(ctx)
	if err != nil || peers == nil {
		return err
	}
	req, err := labels.NewRequirement(l.cfg.Key, "=", []string{string(Leader)})
	if err != nil {
		return fmt.Errorf("label key %q: %w", l.cfg.Key, err)
	}
	sel := peers.Add(*req).String()
	for attempt := 0; ; attempt++ {
		list, err := l.cfg.Pods.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return fmt.Errorf("list peers %q to demote stale leaders: %w", sel, err)
		}
		conflict := false
		for _, p := range list.Items {
			if p.Name == l.cfg.Pod {
				continue
			}
			// The resourceVersion makes the patch fail if the peer changed
			// since the list, so a peer that is legitimately relabelled meanwhile is left alone.
			_, err := l.cfg.Pods.Patch(ctx, p.Name, types.MergePatchType, labelPatch(l.cfg.Key, Follower, p.ResourceVersion), metav1.PatchOptions{})
			switch {
			case err == nil:
				l.log.Warn("demoted a stale leader label on a peer", "peer", p.Name)
				l.mu.Lock()
				l.status.Demoted++
				l.mu.Unlock()
			case apierrors.IsNotFound(err):
			case apierrors.IsConflict(err):
				conflict = true
			default:
				return fmt.Errorf("demote stale leader label on pod %s: %w", p.Name, err)
			}
		}
		if !conflict {
			return nil
		}
		if attempt == 2 {
			// Never label ourselves while a peer may still say leader: back
			// off and try the whole step again.
			return fmt.Errorf("demote stale leader labels %q: peers changed during each of 3 attempts", sel)
		}
	}
}

// peerSelector returns the selector of peers, deriving it from the own pod's
// labels the first time; nil means repair is off.
func (l *Labeler) peerSelector(ctx context.Context) (labels.Selector, error) {
	l.mu.Lock()
	peers, resolved := l.peers, l.peersResolved
	l.mu.Unlock()
	if peers != nil || resolved {
		return peers, nil
	}
	pod, err := l.cfg.Pods.Get(ctx, l.cfg.Pod, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("read own pod %s to find its peers: %w", l.cfg.Pod, err)
	}
	for _, key := range []string{"app.kubernetes.io/name", "app"} {
		if v, ok := pod.Labels[key]; ok {
			peers = labels.SelectorFromSet(labels.Set{key: v})
			break
		}
	}
	if peers == nil {
		l.log.Warn("stale-label repair is off: the pod has no app.kubernetes.io/name or app label and PEER_SELECTOR is empty")
	}
	l.mu.Lock()
	l.peers, l.peersResolved = peers, true
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

// noteError records err (nil: recovered) and logs each distinct error once.
func (l *Labeler) noteError(err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	l.mu.Lock()
	prev := l.status.LastError
	l.status.LastError = msg
	l.mu.Unlock()
	switch {
	case msg == prev:
	case err != nil:
		l.log.Error("role label error; election goes on", "err", err)
	default:
		l.log.Info("role label recovered", "after", prev)
	}
}
