package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
)

// leaseWatch is the bench's own watch of the Lease, standing for what the
// followers observe: when it last saw each holder renew, on its own clock.
type leaseWatch struct {
	mu   sync.Mutex
	last map[string]renewSeen // by holder identity
	rw   *watchtools.RetryWatcher
}

// renewSeen is one Lease update as the watch saw it.
type renewSeen struct {
	at       time.Time     // when the event arrived
	duration time.Duration // the Lease's leaseDurationSeconds
}

// watchLease watches Lease name in ns until ctx ends or stop.
func watchLease(ctx context.Context, client kubernetes.Interface, ns, name string) (*leaseWatch, error) {
	sel := fields.OneTermEqualSelector("metadata.name", name)
	list, err := client.CoordinationV1().Leases(ns).List(ctx, metav1.ListOptions{FieldSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("list Lease %s/%s: %w", ns, name, err)
	}
	lw := cache.NewListWatchFromClient(client.CoordinationV1().RESTClient(), "leases", ns, sel)
	rw, err := watchtools.NewRetryWatcherWithContext(ctx, list.ResourceVersion, lw)
	if err != nil {
		return nil, fmt.Errorf("watch Lease %s/%s: %w", ns, name, err)
	}
	w := &leaseWatch{last: map[string]renewSeen{}, rw: rw}
	for i := range list.Items {
		w.saw(&list.Items[i], time.Now())
	}
	go func() {
		for ev := range rw.ResultChan() {
			if l, ok := ev.Object.(*coordinationv1.Lease); ok {
				w.saw(l, time.Now())
			}
		}
	}()
	return w, nil
}

func (w *leaseWatch) saw(l *coordinationv1.Lease, at time.Time) {
	holder := ""
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if holder == "" || l.Spec.LeaseDurationSeconds == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.last[holder] = renewSeen{at: at, duration: time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second}
}

// expiry is when the Lease of holder ends, as the watch observed it: its
// last update seen plus the Lease's duration.
func (w *leaseWatch) expiry(holder string) (time.Time, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, ok := w.last[holder]
	if !ok {
		return time.Time{}, fmt.Errorf("the bench's Lease watch never saw %s hold the Lease", holder)
	}
	return s.at.Add(s.duration), nil
}

// stop ends the watch.
func (w *leaseWatch) stop() { w.rw.Stop() }
