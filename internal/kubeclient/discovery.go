package kubeclient

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
)

// The EndpointSlice writer's calls: EndpointSlices (get, create, update,
// delete) on a REST client of their own whose scheme knows only
// discovery.k8s.io/v1, for the reason in the package doc; Services and
// Endpoints (get) on the core client.

// Discovery makes the discovery.k8s.io/v1 calls.
type Discovery struct {
	rest   *rest.RESTClient
	params runtime.ParameterCodec
}

// Discovery returns a client for discovery.k8s.io/v1 with the Client's
// configuration.
func (c *Client) Discovery() (*Discovery, error) {
	scheme := runtime.NewScheme()
	if err := discoveryv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("build API scheme: %w", err)
	}
	cfg := rest.CopyConfig(c.config)
	gv := discoveryv1.SchemeGroupVersion
	cfg.GroupVersion, cfg.APIPath = &gv, "/apis"
	cfg.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("create client for %s: %w", gv, err)
	}
	return &Discovery{rest: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

// EndpointSlices returns the EndpointSlice calls for namespace ns.
func (d *Discovery) EndpointSlices(ns string) *EndpointSlices {
	return &EndpointSlices{d: d, ns: ns}
}

// EndpointSlices are the EndpointSlice calls in one namespace.
type EndpointSlices struct {
	d  *Discovery
	ns string
}

// Get reads an EndpointSlice.
func (e *EndpointSlices) Get(ctx context.Context, name string, opts metav1.GetOptions) (*discoveryv1.EndpointSlice, error) {
	out := &discoveryv1.EndpointSlice{}
	err := e.d.rest.Get().Namespace(e.ns).Resource("endpointslices").Name(name).
		VersionedParams(&opts, e.d.params).Do(ctx).Into(out)
	return out, err
}

// Create creates an EndpointSlice.
func (e *EndpointSlices) Create(ctx context.Context, s *discoveryv1.EndpointSlice, opts metav1.CreateOptions) (*discoveryv1.EndpointSlice, error) {
	out := &discoveryv1.EndpointSlice{}
	err := e.d.rest.Post().Namespace(e.ns).Resource("endpointslices").
		VersionedParams(&opts, e.d.params).Body(s).Do(ctx).Into(out)
	return out, err
}

// Update replaces an EndpointSlice; its resourceVersion makes it conditional.
func (e *EndpointSlices) Update(ctx context.Context, s *discoveryv1.EndpointSlice, opts metav1.UpdateOptions) (*discoveryv1.EndpointSlice, error) {
	out := &discoveryv1.EndpointSlice{}
	err := e.d.rest.Put().Namespace(e.ns).Resource("endpointslices").Name(s.Name).
		VersionedParams(&opts, e.d.params).Body(s).Do(ctx).Into(out)
	return out, err
}

// Delete deletes an EndpointSlice; opts.Preconditions make it conditional.
func (e *EndpointSlices) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return e.d.rest.Delete().Namespace(e.ns).Resource("endpointslices").Name(name).
		Body(&opts).Do(ctx).Error()
}

// Services returns the Service calls for namespace ns.
func (c *Client) Services(ns string) *Services { return &Services{c: c, ns: ns} }

// Services are the Service calls in one namespace.
type Services struct {
	c  *Client
	ns string
}

// Get reads a Service.
func (s *Services) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Service, error) {
	out := &corev1.Service{}
	err := s.c.core.Get().Namespace(s.ns).Resource("services").Name(name).
		VersionedParams(&opts, s.c.params).Do(ctx).Into(out)
	return out, err
}

// Endpoints returns the core/v1 Endpoints calls for namespace ns.
func (c *Client) Endpoints(ns string) *Endpoints { return &Endpoints{c: c, ns: ns} }

// Endpoints are the core/v1 Endpoints calls in one namespace: only a read,
// to find what k8s-await-election left behind.
type Endpoints struct {
	c  *Client
	ns string
}

// Get reads an Endpoints object.
func (e *Endpoints) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Endpoints, error) {
	out := &corev1.Endpoints{}
	err := e.c.core.Get().Namespace(e.ns).Resource("endpoints").Name(name).
		VersionedParams(&opts, e.c.params).Do(ctx).Into(out)
	return out, err
}
