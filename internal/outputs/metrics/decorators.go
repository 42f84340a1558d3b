package metrics

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/leader-elector/leader-elector/internal/leasestore"
	"github.com/leader-elector/leader-elector/labeler"
)

// Leases returns next, counting its errors and watches and timing the
// writes that name this replica as holder.
func (m *Metrics) Leases(next leasestore.Leases) leasestore.Leases {
	return &leases{m: m, next: next}
}

type leases struct {
	m    *Metrics
	next leasestore.Leases
}

func (l *leases) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	lease, err := counted(ctx, l.m, "lease_get", func() (*coordinationv1.Lease, error) { return l.next.Get(ctx, name, opts) })
	if err == nil {
		l.m.leaseRead()
	}
	return lease, err
}

func (l *leases) List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error) {
	return counted(ctx, l.m, "lease_list", func() (*coordinationv1.LeaseList, error) { return l.next.List(ctx, opts) })
}

func (l *leases) Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	return l.write(ctx, "lease_create", lease, func() (*coordinationv1.Lease, error) { return l.next.Create(ctx, lease, opts) })
}

func (l *leases) Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	return l.write(ctx, "lease_update", lease, func() (*coordinationv1.Lease, error) { return l.next.Update(ctx, lease, opts) })
}

// write sends one create or update of lease.
func (l *leases) write(ctx context.Context, op string, lease *coordinationv1.Lease, send func() (*coordinationv1.Lease, error)) (*coordinationv1.Lease, error) {
	var holder string
	if h := lease.Spec.HolderIdentity; h != nil {
		holder = *h
	}
	mine := l.m.holderWrite(holder)
	start := l.m.clock.Now()
	res, err := counted(ctx, l.m, op, send)
	if mine {
		var renewTime *time.Time
		if err == nil && res != nil && res.Spec.RenewTime != nil {
			renewTime = &res.Spec.RenewTime.Time
		}
		l.m.renewed(start, renewTime)
	}
	return res, err
}

func (l *leases) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	l.m.leaseWatch()
	return counted(ctx, l.m, "lease_watch", func() (watch.Interface, error) { return l.next.Watch(ctx, opts) })
}

// Pods returns next, counting its errors.
func (m *Metrics) Pods(next labeler.Pods) labeler.Pods {
	return &pods{m: m, next: next}
}

type pods struct {
	m    *Metrics
	next labeler.Pods
}

func (p *pods) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error) {
	return counted(ctx, p.m, "pod_get", func() (*corev1.Pod, error) { return p.next.Get(ctx, name, opts) })
}

func (p *pods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	return counted(ctx, p.m, "pod_list", func() (*corev1.PodList, error) { return p.next.List(ctx, opts) })
}

func (p *pods) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return counted(ctx, p.m, "pod_watch", func() (watch.Interface, error) { return p.next.Watch(ctx, opts) })
}

func (p *pods) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Pod, error) {
	return counted(ctx, p.m, "pod_patch", func() (*corev1.Pod, error) { return p.next.Patch(ctx, name, pt, data, opts, subresources...) })
}

// counted makes the call op, counting its error.
func counted[T any](ctx context.Context, m *Metrics, op string, call func() (T, error)) (T, error) {
	v, err := call()
	m.apiError(ctx, op, err)
	return v, err
}

// errorCode classifies err for the code label: the HTTP status code of an
// answer, else why there was none.
func errorCode(ctx context.Context, err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if code := status.Status().Code; code != 0 {
			return strconv.Itoa(int(code))
		}
	}
	var netErr net.Error
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded), ctx.Err() != nil:
		// The elector bounds requests with a cancel on its own clock, so its
		// deadlines show as Canceled, like a shutdown.
		return "canceled"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "timeout"
	case netErr != nil, errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "network"
	}
	return "other"
}
