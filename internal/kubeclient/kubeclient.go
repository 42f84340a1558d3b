// Package kubeclient holds the few API calls the sidecar makes (Leases: get,
// list, create, update, watch; Pods: get, list, watch, patch) on a REST client
// whose scheme knows only coordination.k8s.io/v1 and core/v1, plus the
// clients of the optional outputs (events, discovery).
//
// client-go's typed clientsets import a scheme with every API group, whose
// registration touches about 8 MiB of the binary at start-up. The Events
// need it anyway (client-go's tools/events imports it), so the sidecar
// releases those pages once started (internal/memtrim); the calls here still
// go through REST clients of their own, so that each request decodes into
// the few types it needs. The methods have the signatures of client-go's
// typed clients, so tests may use either.
package kubeclient

import (
	"context"
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
)

// Client makes the sidecar's API calls.
type Client struct {
	config       *rest.Config // for the typed clients of other API groups
	coordination *rest.RESTClient
	core         *rest.RESTClient
	params       runtime.ParameterCodec
}

// New returns a Client for cfg.
func New(cfg *rest.Config) (*Client, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{coordinationv1.AddToScheme, corev1.AddToScheme} {
		if err := add(scheme); err != nil {
			return nil, fmt.Errorf("build API scheme: %w", err)
		}
	}
	codecs := serializer.NewCodecFactory(scheme)
	restClient := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion, c.APIPath = &gv, apiPath
		c.NegotiatedSerializer = codecs.WithoutConversion()
		if c.UserAgent == "" {
			c.UserAgent = rest.DefaultKubernetesUserAgent()
		}
		rc, err := rest.RESTClientFor(c)
		if err != nil {
			return nil, fmt.Errorf("create client for %s: %w", gv, err)
		}
		return rc, nil
	}
	co, err := restClient(coordinationv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	core, err := restClient(corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	return &Client{config: rest.CopyConfig(cfg), coordination: co, core: core, params: runtime.NewParameterCodec(scheme)}, nil
}

// RESTConfig returns a copy of the configuration the Client was made from,
// for client-go's typed clients of the API groups this package does not
// cover (events, discovery).
func (c *Client) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Leases returns the Lease calls for namespace ns.
func (c *Client) Leases(ns string) *Leases { return &Leases{c: c, ns: ns} }

// Pods returns the Pod calls for namespace ns.
func (c *Client) Pods(ns string) *Pods { return &Pods{c: c, ns: ns} }

// Leases are the Lease calls in one namespace.
type Leases struct {
	c  *Client
	ns string
}

// Get reads a Lease.
func (l *Leases) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := l.c.coordination.Get().Namespace(l.ns).Resource("leases").Name(name).
		VersionedParams(&opts, l.c.params).Do(ctx).Into(out)
	return out, err
}

// List lists Leases.
func (l *Leases) List(ctx context.Context, opts metav1.ListOptions) (*coordinationv1.LeaseList, error) {
	out := &coordinationv1.LeaseList{}
	err := l.c.coordination.Get().Namespace(l.ns).Resource("leases").
		VersionedParams(&opts, l.c.params).Do(ctx).Into(out)
	return out, err
}

// Create creates a Lease.
func (l *Leases) Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := l.c.coordination.Post().Namespace(l.ns).Resource("leases").
		VersionedParams(&opts, l.c.params).Body(lease).Do(ctx).Into(out)
	return out, err
}

// Update replaces a Lease; its resourceVersion makes it conditional.
func (l *Leases) Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	out := &coordinationv1.Lease{}
	err := l.c.coordination.Put().Namespace(l.ns).Resource("leases").Name(lease.Name).
		VersionedParams(&opts, l.c.params).Body(lease).Do(ctx).Into(out)
	return out, err
}

// Watch watches Leases.
func (l *Leases) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return l.c.coordination.Get().Namespace(l.ns).Resource("leases").
		VersionedParams(&opts, l.c.params).Watch(ctx)
}

// Pods are the Pod calls in one namespace.
type Pods struct {
	c  *Client
	ns string
}

// Get reads a Pod.
func (p *Pods) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	err := p.c.core.Get().Namespace(p.ns).Resource("pods").Name(name).
		VersionedParams(&opts, p.c.params).Do(ctx).Into(out)
	return out, err
}

// List lists Pods.
func (p *Pods) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	out := &corev1.PodList{}
	err := p.c.core.Get().Namespace(p.ns).Resource("pods").
		VersionedParams(&opts, p.c.params).Do(ctx).Into(out)
	return out, err
}

// Patch patches a Pod.
func (p *Pods) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Pod, error) {
	out := &corev1.Pod{}
	err := p.c.core.Patch(pt).Namespace(p.ns).Resource("pods").Name(name).SubResource(subresources...).
		VersionedParams(&opts, p.c.params).Body(data).Do(ctx).Into(out)
	return out, err
}

// Watch watches Pods.
func (p *Pods) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return p.c.core.Get().Namespace(p.ns).Resource("pods").
		VersionedParams(&opts, p.c.params).Watch(ctx)
}
