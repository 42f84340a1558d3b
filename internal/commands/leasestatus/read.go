package leasestatus

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/utils/clock"
)

// Leases is what status needs of the Lease API of one namespace; client-go's
// typed client and kubeclient.Leases have it.
type Leases interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error)
}

// Pods is what status needs of the pods API of one namespace.
type Pods interface {
	List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error)
}

// Query names what to report on.
type Query struct {
	Namespace, Lease string
	// LabelKey is the role label's key; pods without it are not read.
	LabelKey string
	// Selector narrows the pods further (a release's labels, say); may be
	// empty.
	Selector string
}

// PodSelector is the selector of the pods q reads: those carrying the label
// key, among those Selector selects.
func (q Query) PodSelector() (labels.Selector, error) {
	sel, err := labels.Parse(q.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector %q: %w", q.Selector, err)
	}
	has, err := labels.NewRequirement(q.LabelKey, selection.Exists, nil)
	if err != nil {
		return nil, fmt.Errorf("label key %q: %w", q.LabelKey, err)
	}
	return sel.Add(*has), nil
}

// Read reads the Lease and the pods q names and reports on them as of the
// clock's time after both reads. A missing Lease is a report, not an error.
func Read(ctx context.Context, leases Leases, pods Pods, q Query, clk clock.PassiveClock) (Report, error) {
	sel, err := q.PodSelector()
	if err != nil {
		return Report{}, err
	}
	lease, err := leases.Get(ctx, q.Lease, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		lease = nil
	case err != nil:
		return Report{}, fmt.Errorf("read Lease %s/%s: %w", q.Namespace, q.Lease, err)
	}
	list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return Report{}, fmt.Errorf("list pods %q in %s: %w", sel.String(), q.Namespace, err)
	}
	return Build(q.Namespace, q.Lease, lease, list.Items, q.LabelKey, q.Selector, clk.Now()), nil
}
