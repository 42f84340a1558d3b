// Package peers finds the pods that share the Lease with this one, its
// peers, and lists and watches them for an informer: the labeler's, which
// keeps their role labels right, and succession's, which picks the next
// leader among them. Both run while this replica leads; followers make no
// requests.
package peers

import (
	"errors"
	"fmt"
	"io"
	"sync"

	"context"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
)

// Pods is what listing and watching the peers needs of the pods API.
type Pods interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// DefaultSelector is the peer selector derived from a pod's labels: its
// app.kubernetes.io/name label, or else its app label, narrowed by its
// app.kubernetes.io/instance and app.kubernetes.io/component labels when it
// has them, so that two releases (or two components) of one chart in one
// namespace are not each other's peers. Nil: the pod has neither name nor
// app label, and it has no peers it can tell.
func DefaultSelector(podLabels map[string]string) labels.Selector {
	set := labels.Set{}
	for _, key := range []string{"app.kubernetes.io/name", "app"} {
		if v, ok := podLabels[key]; ok {
			set[key] = v
			break
		}
	}
	if len(set) == 0 {
		return nil
	}
	for _, key := range []string{"app.kubernetes.io/instance", "app.kubernetes.io/component"} {
		if v, ok := podLabels[key]; ok {
			set[key] = v
		}
	}
	return labels.SelectorFromSet(set)
}

// ListWatch lists and watches the pods selector selects, or the pod named
// pod alone when selector is nil. watched, if set, is called after every
// watch that started.
func ListWatch(pods Pods, selector labels.Selector, pod string, watched func()) cache.ListerWatcher {
	narrow := func(opts *metav1.ListOptions) {
		if selector != nil {
			opts.LabelSelector = selector.String()
		} else {
			opts.FieldSelector = fields.OneTermEqualSelector("metadata.name", pod).String()
		}
	}
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			narrow(&opts)
			return pods.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			narrow(&opts)
			w, err := pods.Watch(ctx, opts)
			if err == nil && watched != nil {
				watched()
			}
			return w, err
		},
	}
	// The peers are a handful of pods, so a plain list is cheap; and it
	// works with every Pods, client-go's fake included, which cannot serve
	// the streaming watch-list.
	return cache.ToListWatcherWithWatchListSemantics(lw, plainList{})
}

// plainList tells the informer to list, not to stream the initial list.
type plainList struct{}

func (plainList) IsWatchListSemanticsUnSupported() bool { return true }

// Slim is an informer transform that keeps of a pod what the labeler and
// succession read: its name, labels, resourceVersion, creation and deletion
// times, phase, IP and Ready condition. A pod's spec and managed fields are
// most of its size, and the informer keeps every peer for a whole term.
func Slim(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion, Labels: p.Labels,
			CreationTimestamp: p.CreationTimestamp, DeletionTimestamp: p.DeletionTimestamp,
		},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP},
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			slim.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status, LastTransitionTime: c.LastTransitionTime}}
		}
	}
	return slim, nil
}

// Describe names what selector (or, when nil, pod) selects, for errors.
func Describe(selector labels.Selector, pod string) string {
	if selector == nil {
		return "metadata.name=" + pod
	}
	return `"` + selector.String() + `"`
}

// Getter reads one pod.
type Getter interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error)
}

// A Finder tells the selector of a pod's peers: the one it was given, or
// DefaultSelector of the pod's labels, read once.
type Finder struct {
	pods Getter
	pod  string

	mu       sync.Mutex
	sel      labels.Selector
	resolved bool
}

// NewFinder returns a Finder of the peers of pod; sel, if not nil, is
// their selector.
func NewFinder(pods Getter, pod string, sel labels.Selector) *Finder {
	return &Finder{pods: pods, pod: pod, sel: sel, resolved: sel != nil}
}

// Selector returns the peers' selector, reading the pod the first time
// (first reports that this call did); nil: the pod has no label that tells
// its peers.
func (f *Finder) Selector(ctx context.Context) (sel labels.Selector, first bool, err error) {
	f.mu.Lock()
	sel, resolved := f.sel, f.resolved
	f.mu.Unlock()
	if resolved {
		return sel, false, nil
	}
	pod, err := f.pods.Get(ctx, f.pod, metav1.GetOptions{})
	if err != nil {
		return nil, false, fmt.Errorf("read own pod %s to find its peers: %w", f.pod, err)
	}
	sel = DefaultSelector(pod.Labels)
	f.mu.Lock()
	defer f.mu.Unlock()
	first = !f.resolved
	f.sel, f.resolved = sel, true
	return sel, first, nil
}

// Informer returns an informer of the pods sel selects (the pod alone when
// sel is nil), not yet run, that keeps them without their managed fields
// and sends on kick, without blocking, at every change it sees. watchErr
// gets every watch error but the normal ends (a closed stream, a
// resourceVersion too old, after which it lists again), and nil once a
// watch started.
func Informer(pods Pods, sel labels.Selector, pod string, kick chan<- struct{}, watchErr func(error)) (cache.SharedIndexInformer, cache.ResourceEventHandlerRegistration, error) {
	poke := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	informer := cache.NewSharedIndexInformerWithOptions(ListWatch(pods, sel, pod, func() { watchErr(nil) }), &corev1.Pod{},
		cache.SharedIndexInformerOptions{ObjectDescription: "peer pods"})
	_ = informer.SetTransform(Slim) // errors only once started
	_ = informer.SetWatchErrorHandlerWithContext(func(ctx context.Context, _ *cache.Reflector, err error) {
		switch {
		case ctx.Err() != nil, errors.Is(err, io.EOF), apierrors.IsResourceExpired(err), apierrors.IsGone(err):
		default:
			watchErr(fmt.Errorf("watch peer pods %s: %w", Describe(sel, pod), err))
		}
	})
	reg, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { poke() },
		UpdateFunc: func(any, any) { poke() },
		DeleteFunc: func(any) { poke() },
	})
	return informer, reg, err
}

// Run runs informer until ctx ends and waits until its first list is in its
// store (synced false: ctx ended first); wait returns once the informer has
// stopped.
func Run(ctx context.Context, informer cache.SharedIndexInformer, reg cache.ResourceEventHandlerRegistration) (wait func(), synced bool) {
	var wg sync.WaitGroup
	wg.Go(func() { informer.RunWithContext(ctx) })
	select {
	case <-ctx.Done():
		return wg.Wait, false
	case <-reg.HasSyncedChecker().Done():
		return wg.Wait, true
	}
}
