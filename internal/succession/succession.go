// Package succession hands the Lease on when this replica's pod is being
// deleted (kubectl delete, an eviction, a drain, a scale-down, a rollout):
// at the deletion itself, not at the SIGTERM that a native sidecar gets only
// once the kubelet has stopped the app, and to the peer that will stay (see
// Choose), so that a rollout moves leadership once.
//
// While this replica leads, it watches its peers' pods, its own among them,
// with an informer of its own (the leader's alone: followers make no
// requests). When it sees its own pod's deletionTimestamp, or the pod gone,
// it retires from the election once, naming Choose's pick and its pod IP:
// the election steps down in the usual order (status file, label) and
// offers the pick the Lease by a take-over, which the pick takes by one
// write. With no pick, or when the replicas' identities are not their pod
// names, the election offers it to its standby, if any, and releases it
// when nobody takes it.
package succession

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/internal/lasterr"
	"github.com/leader-elector/leader-elector/internal/leaderterm"
	"github.com/leader-elector/leader-elector/internal/peers"
)

// Pods is what succession needs of the pods API of its namespace.
type Pods interface {
	peers.Pods
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error)
}

// Config configures a Succession.
type Config struct {
	Pods Pods
	// Pod is this pod's name.
	Pod string
	// ByPodName says that every replica's identity is its pod name, so
	// that a pod can be named as successor; false: a retiring leader
	// releases the Lease instead.
	ByPodName bool
	// PeerSelector selects the pods that share the Lease; empty: derived
	// from the own pod's labels by peers.DefaultSelector.
	PeerSelector labels.Selector
	// Retire retires this replica from the election, handing the Lease to
	// the pod named to, at podIP; both empty: to anyone.
	Retire func(ctx context.Context, to, podIP string) error
	// Synced, if set, is called once a term's informer has its first list,
	// in the term's goroutine: the sidecar hands back the memory that the
	// list's decoding and the informer's first run took.
	Synced func()
	// Clock times the back-off of retries. Default: clock.RealClock{}.
	Clock clock.WithTicker
	Log   *slog.Logger
}

// Succession watches the pods while this replica leads; see the package doc.
type Succession struct {
	cfg   Config
	log   *slog.Logger
	clock clock.WithTicker
	wish  *leaderterm.Wish
	errs  *lasterr.Tracker // the reads and watches of the pods
	setup *lasterr.Tracker // a selector that misses the own pod

	finder *peers.Finder

	mu      sync.Mutex
	retired bool
}

// New returns a Succession that follows until told to lead.
func New(cfg Config) (*Succession, error) {
	switch {
	case cfg.Pods == nil:
		return nil, errors.New("succession config: Pods is required")
	case cfg.Pod == "":
		return nil, errors.New("succession config: Pod is required")
	case cfg.Retire == nil:
		return nil, errors.New("succession config: Retire is required")
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	log = log.With("pod", cfg.Pod)
	return &Succession{cfg: cfg, log: log, clock: clk, wish: leaderterm.NewWish(nil),
		errs:   lasterr.New(log, "cannot watch the pods to hand over on this pod's deletion; a deletion hands over on SIGTERM", "watching the pods again"),
		setup:  lasterr.New(log, "cannot hand over on this pod's deletion; a deletion hands over on SIGTERM", "this pod is among its peers again"),
		finder: peers.NewFinder(cfg.Pods, cfg.Pod, cfg.PeerSelector)}, nil
}

// SetLeading starts or ends the watch; it does not block.
func (s *Succession) SetLeading(lead bool) { s.wish.Set(lead) }

// LastError is the last error of the watch, or "".
func (s *Succession) LastError() string { return cmp.Or(s.setup.Last(), s.errs.Last()) }

// Run watches the pods while this replica leads, until ctx ends.
func (s *Succession) Run(ctx context.Context) error {
	s.wish.Run(ctx, func(tctx context.Context, _ int) { s.watch(ctx, tctx) }, nil)
	return nil
}

// firstRetry is the first wait of the back-off of a failed read.
const firstRetry = 200 * time.Millisecond

// watch runs one term's watch until tctx ends or the term's watch is over
// (it retired, or the own pod is not among the peers); Retire is called on
// ctx, which outlives the term that the step-down ends. A watch that
// breaks is started again after peers.Rewatch's back-off, and sees what
// changed meanwhile in its new list.
func (s *Succession) watch(ctx, tctx context.Context) {
	sel, ok := s.selector(tctx)
	if !ok {
		return
	}
	seen := false // the own pod was in a list or event of this term
	peers.Watch(tctx, peers.WatchConfig{Pods: s.cfg.Pods, Selector: sel, Pod: s.cfg.Pod, Clock: s.clock,
		WatchErr: func(err error) { s.errs.Note(err) }, Synced: s.cfg.Synced},
		func(store cache.Store) (bool, time.Duration) { return s.check(ctx, store, &seen), 0 })
}

// selector finds the peers' selector, retrying with a back-off; false if
// tctx ended, or the own pod cannot be read (not a pod, or not allowed:
// the next term tries again).
func (s *Succession) selector(tctx context.Context) (labels.Selector, bool) {
	backoff := leaderterm.Backoff(firstRetry)
	for {
		sel, _, err := s.finder.Selector(tctx)
		if err == nil {
			return sel, true
		}
		if tctx.Err() != nil {
			return nil, false
		}
		s.errs.Note(err)
		if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
			return nil, false
		}
		if !leaderterm.Sleep(tctx, s.clock, backoff.Step(), nil) {
			return nil, false
		}
	}
}

// check retires if the own pod is being deleted, or gone after it was seen,
// and reports whether the term's watch is over.
func (s *Succession) check(ctx context.Context, store cache.Store, seen *bool) bool {
	var self *corev1.Pod
	var all []*corev1.Pod
	for _, o := range store.List() {
		p := o.(*corev1.Pod)
		all = append(all, p)
		if p.Name == s.cfg.Pod {
			self = p
		}
	}
	switch {
	case self == nil && !*seen:
		s.setup.Note(fmt.Errorf("this pod %s is not among its peers (PEER_SELECTOR): it cannot see its own deletion", s.cfg.Pod))
		return true
	case self != nil && self.DeletionTimestamp == nil:
		*seen = true
		s.setup.Note(nil)
		return false
	}
	s.mu.Lock()
	done := s.retired
	s.retired = true
	s.mu.Unlock()
	if done {
		return true
	}
	var to, ip string
	if p := Choose(s.cfg.Pod, all); p != nil && s.cfg.ByPodName {
		to, ip = p.Name, p.Status.PodIP
	}
	how := "being deleted"
	if self == nil {
		how = "gone"
	}
	s.log.Info("this pod is "+how+"; handing the lease over", "to", to)
	if err := s.cfg.Retire(ctx, to, ip); err != nil && ctx.Err() == nil {
		s.log.Warn("handing the lease over on this pod's deletion failed", "to", to, "err", err)
	}
	return true
}
