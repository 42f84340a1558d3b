package chaos

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// fileRecorder timestamps every appearance and removal of the status files
// of all replicas. One fsnotify watcher holds every emptyDir, so its events
// come in one queue in the order the kernel saw them; a poller stats the
// files every few milliseconds as a second, independent witness, and checks
// that the two agree.
type fileRecorder struct {
	tracker  *fileTracker
	replicas []*replica
	byDir    map[string]*replica
	w        *fsnotify.Watcher
	// onPollTwo is called when two consecutive passes of the poller both
	// saw two files of running (not frozen) sidecars of one workload.
	onPollTwo func(w *workload, pods []string)

	mu   sync.Mutex
	errs []error
}

func newFileRecorder(tracker *fileTracker, replicas []*replica) (*fileRecorder, error) {
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return nil, fmt.Errorf("watch status files: %w", err)
	}
	fr := &fileRecorder{tracker: tracker, replicas: replicas, byDir: map[string]*replica{}, w: w}
	for _, r := range replicas {
		if err := w.Add(r.emptyDir); err != nil {
			_ = w.Close()
			return nil, fmt.Errorf("watch status directory %s: %w", r.emptyDir, err)
		}
		fr.byDir[filepath.Clean(r.emptyDir)] = r
		tracker.set(r.w.name, r.pod, r.hasStatusFile(), time.Now())
	}
	return fr, nil
}

func (fr *fileRecorder) fail(err error) {
	fr.mu.Lock()
	fr.errs = append(fr.errs, err)
	fr.mu.Unlock()
}

// errors are the recorder's own failures: lost events, disagreement.
func (fr *fileRecorder) errors() []error {
	fr.mu.Lock()
	defer fr.mu.Unlock()
	return append([]error(nil), fr.errs...)
}

// run records until ctx ends.
func (fr *fileRecorder) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { fr.poll(ctx) })
	defer wg.Wait()
	defer fr.w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-fr.w.Events:
			if !ok {
				return
			}
			now := time.Now()
			r := fr.byDir[filepath.Dir(filepath.Clean(ev.Name))]
			if r == nil || filepath.Base(ev.Name) != "leader_status" {
				continue
			}
			switch {
			case ev.Has(fsnotify.Create):
				fr.tracker.set(r.w.name, r.pod, true, now)
			case ev.Has(fsnotify.Remove), ev.Has(fsnotify.Rename):
				fr.tracker.set(r.w.name, r.pod, false, now)
			}
		case err, ok := <-fr.w.Errors:
			if !ok {
				return
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				err = fmt.Errorf("the status file recorder lost events: %w", err)
			}
			fr.fail(err)
		}
	}
}

// pollEvery is the poller's period.
const pollEvery = 5 * time.Millisecond

// mismatchLimit is how long the poller and fsnotify may disagree about a
// file before the recorder counts as broken: far longer than an event takes.
const mismatchLimit = 2 * time.Second

func (fr *fileRecorder) poll(ctx context.Context) {
	mismatch := map[*replica]time.Time{}
	byWorkload := map[*workload][]*replica{}
	for _, r := range fr.replicas {
		byWorkload[r.w] = append(byWorkload[r.w], r)
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for w, rs := range byWorkload {
			first := make([]bool, len(rs))
			for i, r := range rs {
				first[i] = r.hasStatusFile()
			}
			var both []string
			for i, r := range rs {
				now := r.hasStatusFile()
				if now != fr.tracker.exists(w.name, r.pod) {
					if _, ok := mismatch[r]; !ok {
						mismatch[r] = time.Now()
					} else if time.Since(mismatch[r]) > mismatchLimit {
						fr.fail(fmt.Errorf("fsnotify and the poller disagree for over %s about the status file of %s (poller: exists=%v)", mismatchLimit, r.pod, now))
						delete(mismatch, r)
					}
				} else {
					delete(mismatch, r)
				}
				if first[i] && now && !fr.tracker.isFrozen(r.pod) {
					both = append(both, r.pod)
				}
			}
			if len(both) >= 2 && fr.onPollTwo != nil {
				fr.onPollTwo(w, both)
			}
		}
	}
}

func (f *fileTracker) isFrozen(pod string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.frozen[pod]
}

// leaseEvent is one change of a Lease, as the watch delivered it.
type leaseEvent struct {
	at          time.Time
	lease       string
	deleted     bool
	holder      string
	durationSec int32
	transitions int32
	version     string
}

func (e leaseEvent) String() string {
	if e.deleted {
		return fmt.Sprintf("%s %s deleted", e.at.Format("15:04:05.000"), e.lease)
	}
	return fmt.Sprintf("%s %s holder=%q duration=%ds transitions=%d rv=%s", e.at.Format("15:04:05.000"), e.lease, e.holder, e.durationSec, e.transitions, e.version)
}

// leaseRecorder keeps every Lease change of the namespace.
type leaseRecorder struct {
	mu     sync.Mutex
	events []leaseEvent
	latest map[string]leaseEvent
}

// holder is the holder of lease in its latest version seen.
func (lr *leaseRecorder) holder(lease string) string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return lr.latest[lease].holder
}

func (lr *leaseRecorder) add(obj any, deleted bool) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok {
		return
	}
	e := leaseEvent{at: time.Now(), lease: l.Name, deleted: deleted, version: l.ResourceVersion}
	if l.Spec.HolderIdentity != nil {
		e.holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseDurationSeconds != nil {
		e.durationSec = *l.Spec.LeaseDurationSeconds
	}
	if l.Spec.LeaseTransitions != nil {
		e.transitions = *l.Spec.LeaseTransitions
	}
	lr.mu.Lock()
	lr.events = append(lr.events, e)
	if lr.latest == nil {
		lr.latest = map[string]leaseEvent{}
	}
	lr.latest[e.lease] = e
	lr.mu.Unlock()
}

// between returns the changes of lease from from to to.
func (lr *leaseRecorder) between(lease string, from, to time.Time) []leaseEvent {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	var out []leaseEvent
	for _, e := range lr.events {
		if e.lease == lease && !e.at.Before(from) && !e.at.After(to) {
			out = append(out, e)
		}
	}
	return out
}

// follow lists with list and watches from the list's resourceVersion,
// calling on for every object listed and every change, until ctx ends. It
// resumes a broken watch from the last resourceVersion after 50ms, and lists
// again on 410 Gone (then reporting only what changed). client-go's
// reflectors back off up to 30 s after an API server restart; a recorder
// must not look at a stale world. synced is closed after the first list.
func follow(ctx context.Context, list func(context.Context, metav1.ListOptions) (runtime.Object, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), on func(obj any, deleted bool), synced chan<- struct{}) {
	known := map[string]runtime.Object{}
	rv := ""
	for ctx.Err() == nil {
		if rv == "" {
			l, err := list(ctx, metav1.ListOptions{})
			if err != nil {
				_ = sleep(ctx, 50*time.Millisecond)
				continue
			}
			items, err := meta.ExtractList(l)
			if err != nil {
				return
			}
			seen := map[string]runtime.Object{}
			for _, o := range items {
				m, _ := meta.Accessor(o)
				seen[m.GetName()] = o
				if old, ok := known[m.GetName()]; !ok || version(old) != m.GetResourceVersion() {
					on(o, false)
				}
			}
			for name, o := range known {
				if _, ok := seen[name]; !ok {
					on(o, true)
				}
			}
			known = seen
			lm, _ := meta.ListAccessor(l)
			rv = lm.GetResourceVersion()
			if synced != nil {
				close(synced)
				synced = nil
			}
		}
		w, err := watchFn(ctx, metav1.ListOptions{ResourceVersion: rv, AllowWatchBookmarks: true})
		if err != nil {
			if apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
				rv = ""
			}
			_ = sleep(ctx, 50*time.Millisecond)
			continue
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				if err := apierrors.FromObject(ev.Object); apierrors.IsGone(err) || apierrors.IsResourceExpired(err) {
					rv = ""
				}
				break
			}
			m, err := meta.Accessor(ev.Object)
			if err != nil {
				continue
			}
			rv = m.GetResourceVersion()
			switch ev.Type {
			case watch.Added, watch.Modified:
				known[m.GetName()] = ev.Object
				on(ev.Object, false)
			case watch.Deleted:
				delete(known, m.GetName())
				on(ev.Object, true)
			}
		}
		w.Stop()
		_ = sleep(ctx, 50*time.Millisecond)
	}
}

func version(o runtime.Object) string {
	m, err := meta.Accessor(o)
	if err != nil {
		return ""
	}
	return m.GetResourceVersion()
}

// recorder starts follow on wg and returns its synced channel.
func recorder[L runtime.Object](ctx context.Context, wg *sync.WaitGroup, list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error), on func(obj any, deleted bool)) <-chan struct{} {
	synced := make(chan struct{})
	wg.Go(func() {
		follow(ctx, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return list(ctx, o) }, watchFn, on, synced)
	})
	return synced
}

// apiRecorders watch the Leases, the EndpointSlices and the pods of the
// namespace as the admin.
type apiRecorders struct {
	leases *leaseRecorder
	// routed: the ready pods each workload's Service names, from the slices.
	routed *setTracker
	// labelled: the pods of each workload labelled role=leader.
	labelled *setTracker
	synced   []<-chan struct{}
}

func startAPIRecorders(ctx context.Context, wg *sync.WaitGroup, admin kubernetes.Interface, ns string, workloads []*workload, routed, labelled *setTracker) (*apiRecorders, error) {
	a := &apiRecorders{leases: &leaseRecorder{}, routed: routed, labelled: labelled}
	leases := admin.CoordinationV1().Leases(ns)
	a.synced = append(a.synced, recorder(ctx, wg, leases.List, leases.Watch, a.leases.add))

	byService := map[string]*workload{}
	for _, w := range workloads {
		byService[w.service] = w
	}
	var mu sync.Mutex
	slicesOf := map[string]map[string][]string{} // service -> slice -> ready pods
	eps := admin.DiscoveryV1().EndpointSlices(ns)
	a.synced = append(a.synced, recorder(ctx, wg, eps.List, eps.Watch, func(obj any, deleted bool) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return
		}
		w := byService[s.Labels[discoveryv1.LabelServiceName]]
		if w == nil {
			return
		}
		now := time.Now()
		mu.Lock()
		defer mu.Unlock()
		m := slicesOf[w.service]
		if m == nil {
			m = map[string][]string{}
			slicesOf[w.service] = m
		}
		if deleted {
			delete(m, s.Name)
		} else {
			m[s.Name] = readyPods(s)
		}
		var all []string
		for _, pods := range m {
			all = append(all, pods...)
		}
		routed.set(w.name, all, now)
	}))

	byPod := map[string]*workload{}
	for _, w := range workloads {
		for _, r := range w.replicas {
			byPod[r.pod] = w
		}
	}
	var pmu sync.Mutex
	roles := map[string]string{}
	pods := admin.CoreV1().Pods(ns)
	a.synced = append(a.synced, recorder(ctx, wg, pods.List, pods.Watch, func(obj any, deleted bool) {
		p, ok := obj.(*corev1.Pod)
		if !ok || byPod[p.Name] == nil {
			return
		}
		w := byPod[p.Name]
		now := time.Now()
		pmu.Lock()
		defer pmu.Unlock()
		if deleted {
			delete(roles, p.Name)
		} else {
			roles[p.Name] = p.Labels[roleKey]
		}
		var leaders []string
		for _, r := range w.replicas {
			if roles[r.pod] == "leader" {
				leaders = append(leaders, r.pod)
			}
		}
		labelled.set(w.name, leaders, now)
	}))
	return a, nil
}

// rateWindow is the window of the request-rate bound.
const rateWindow = 3 * time.Second

// rateSampler reads every proxy's counts every 100ms and keeps, per round,
// each replica's highest number of requests (plain and watches) and of new
// connections within any rateWindow.
type rateSampler struct {
	replicas []*replica
	// onRate is called with each replica's counts over the last window.
	onRate func(r *replica, window testcluster.Counts)
}

func (rs *rateSampler) run(ctx context.Context) {
	type sample struct {
		at time.Time
		c  testcluster.Counts
	}
	hist := map[*replica][]sample{}
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		for _, r := range rs.replicas {
			h := append(hist[r], sample{now, r.proxy.Counts()})
			for len(h) > 1 && now.Sub(h[1].at) >= rateWindow {
				h = h[1:]
			}
			hist[r] = h
			if now.Sub(h[0].at) >= rateWindow-50*time.Millisecond {
				rs.onRate(r, h[len(h)-1].c.Minus(h[0].c))
			}
		}
	}
}

// readyPods are the pods a slice names as ready, as the harness counts them.
func readyPods(s *discoveryv1.EndpointSlice) []string {
	var out []string
	for _, ep := range s.Endpoints {
		if ep.TargetRef == nil || (ep.Conditions.Ready != nil && !*ep.Conditions.Ready) {
			continue
		}
		out = append(out, ep.TargetRef.Name)
	}
	return out
}
