package labeler

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/resourceversion"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"

	"github.com/leader-elector/leader-elector/internal/leaderterm"
	peerpods "github.com/leader-elector/leader-elector/internal/peers"
)

// lead is a leader term: it resolves the peers, watches them with an
// informer (which lists, watches, and lists again whenever the watch history
// is gone; a broken watch is started again after peerpods.Rewatch), and
// after every change makes the labels right: peers that say leader are
// demoted, then the own pod is labelled leader, and labelled again whenever
// anyone removes or changes that label. Failed passes are retried with
// back-off. It returns when ctx ends, after every request it started has
// returned.
func (l *Labeler) lead(ctx context.Context, gen int) {
	backoff := leaderterm.Backoff(firstRetry)
	var peers labels.Selector
	for {
		var err error
		if peers, err = l.peerSelector(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		l.errs.Note(err)
		if !leaderterm.Sleep(ctx, l.clock, backoff.Step(), nil) {
			return
		}
	}
	defer l.setWatching(false)
	st := &termState{written: map[string]string{}}
	backoff = leaderterm.Backoff(firstRetry)
	peerpods.Watch(ctx, peerpods.WatchConfig{Pods: l.cfg.Pods, Selector: peers, Pod: l.cfg.Pod, Clock: l.clock,
		WatchErr: func(err error) {
			l.watchErrs.Note(err)
			if err != nil {
				l.setWatching(false)
			}
		},
		Synced:  func() { l.setWatching(true) },
		Rewatch: rewatch,
	}, func(store cache.Store) (bool, time.Duration) {
		err := l.reconcile(ctx, gen, store, peers, st)
		switch {
		case ctx.Err() != nil || errors.Is(err, leaderterm.ErrNotLeading):
			return true, 0
		case err != nil:
			l.errs.Note(err)
			return false, backoff.Step()
		}
		backoff = leaderterm.Backoff(firstRetry)
		l.errs.Note(nil)
		return false, 0
	})
}

// rewatch is the back-off between broken watches of the peers: 1 s, then
// 2 s (20% jitter), so that a label is repaired within about 2 s of a
// permission given back (the reflector's own back-off, 0.8 s doubling to
// 30 s, took 9 s in the chaos suite), and not every second: that made the
// suite's revoke-rolebinding round start 7 watches within one RETRY_PERIOD,
// one over its bound, with succession's and the Lease's watches.
var rewatch = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: 1 << 30, Cap: 2 * time.Second}

// termState is what a term knows beyond the informer's store.
type termState struct {
	// labelled is set once the own pod was labelled leader in this term.
	labelled bool
	// written holds the resourceVersion returned by this term's last patch
	// of each pod, so that a store that has not caught up with it yet does
	// not make the term write again.
	written map[string]string
	// warnedSelf is set once the own pod was found missing from the store.
	warnedSelf bool
}

// stale reports whether p is older than the term's last write to it.
func (st *termState) stale(p *corev1.Pod) bool {
	w, ok := st.written[p.Name]
	if !ok {
		return false
	}
	c, err := resourceversion.CompareResourceVersion(p.ResourceVersion, w)
	if err != nil {
		return p.ResourceVersion != w // not comparable: trust only an exact match
	}
	return c < 0
}

// reconcile makes one pass over the store: it demotes every peer that says
// leader, then, only if none may still say so, labels the own pod leader
// (labelOwn). Every patch is preceded by a check that the term still runs.
func (l *Labeler) reconcile(ctx context.Context, gen int, store cache.Store, peers labels.Selector, st *termState) error {
	var own *corev1.Pod
	var errs []error
	for _, obj := range store.List() {
		p, ok := obj.(*corev1.Pod)
		if !ok {
			continue
		}
		if p.Name == l.cfg.Pod {
			own = p
			continue
		}
		// The API server selected the pods; checking again keeps a pod that
		// is no peer from ever being patched.
		if peers == nil || !peers.Matches(labels.Set(p.Labels)) || p.Labels[l.cfg.Key] != string(Leader) || st.stale(p) {
			continue
		}
		if err := l.demotePeer(ctx, gen, p, st); err != nil {
			if errors.Is(err, leaderterm.ErrNotLeading) {
				return err
			}
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Never label the own pod while a peer may still say leader.
		return errors.Join(errs...)
	}
	return l.labelOwn(ctx, gen, own, peers, st)
}

// labelOwn labels the own pod leader, the first time in the term and
// whenever its label was removed or changed; own is its latest version in
// the store, nil when the store has none.
func (l *Labeler) labelOwn(ctx context.Context, gen int, own *corev1.Pod, peers labels.Selector, st *termState) error {
	if own == nil && !st.warnedSelf && peers != nil {
		st.warnedSelf = true
		l.log.Warn("the own pod is not among the watched peers (deleted, or PEER_SELECTOR does not select it): a removed role label is not put back",
			"peer_selector", peers.String())
	}
	var found string
	switch {
	case !st.labelled:
	case own == nil || st.stale(own) || own.Labels[l.cfg.Key] == string(Leader):
		return nil
	default:
		found = own.Labels[l.cfg.Key]
	}
	if err := l.wish.Fence(ctx, gen); err != nil {
		return err
	}
	p, err := l.patchOwn(ctx, Leader)
	if err != nil {
		return err
	}
	st.written[p.Name] = p.ResourceVersion
	if st.labelled {
		l.log.Warn("put the own role label back", "role", Leader, "found", found)
		l.mu.Lock()
		l.status.Restored++
		l.mu.Unlock()
		l.repaired(Repair{Pod: p.Name, UID: p.UID, From: found, To: string(Leader)})
	} else {
		l.log.Info("labelled pod", "role", Leader)
	}
	st.labelled = true
	l.wrote(gen, Leader)
	return nil
}

// demotePeer sets follower on peer p, which says leader. The resourceVersion
// makes the patch fail if p changed since it was read, so a peer relabelled
// meanwhile is left alone until the store shows its new version.
func (l *Labeler) demotePeer(ctx context.Context, gen int, p *corev1.Pod, st *termState) error {
	if err := l.wish.Fence(ctx, gen); err != nil {
		return err
	}
	out, err := l.cfg.Pods.Patch(ctx, p.Name, types.MergePatchType, labelPatch(l.cfg.Key, Follower, p.ResourceVersion), metav1.PatchOptions{})
	switch {
	case err == nil:
		st.written[p.Name] = out.ResourceVersion
		l.log.Warn("demoted a stale leader label on a peer", "peer", p.Name)
		l.mu.Lock()
		l.status.Demoted++
		l.mu.Unlock()
		l.repaired(Repair{Pod: p.Name, UID: p.UID, From: string(Leader), To: string(Follower)})
		return nil
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("demote stale leader label on pod %s: it changed since it was read; not labelling this pod leader until it is read again: %w", p.Name, err)
	default:
		return fmt.Errorf("demote stale leader label on pod %s: %w", p.Name, err)
	}
}

func (l *Labeler) setWatching(on bool) {
	l.mu.Lock()
	l.status.Watching = on
	l.mu.Unlock()
}

// repaired tells Config.OnRepair, if set.
func (l *Labeler) repaired(r Repair) {
	if l.cfg.OnRepair != nil {
		l.cfg.OnRepair(r)
	}
}
