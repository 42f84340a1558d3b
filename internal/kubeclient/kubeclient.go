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
// the few types it needs. The calls themselves are client-go's generic typed
// client (gentype), the one its generated clientsets are built on, so they
// have the same signatures and tests may use either.
package kubeclient

import (
	"fmt"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/gentype"
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
	scheme, err := newScheme(coordinationv1.AddToScheme, corev1.AddToScheme)
	if err != nil {
		return nil, err
	}
	co, err := restClient(cfg, scheme, coordinationv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	core, err := restClient(cfg, scheme, corev1.SchemeGroupVersion, "/api")
	if err != nil {
		return nil, err
	}
	return &Client{config: rest.CopyConfig(cfg), coordination: co, core: core, params: runtime.NewParameterCodec(scheme)}, nil
}

// newScheme returns a scheme that knows the types add registers, and no more.
func newScheme(add ...func(*runtime.Scheme) error) (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, a := range add {
		if err := a(scheme); err != nil {
			return nil, fmt.Errorf("build API scheme: %w", err)
		}
	}
	return scheme, nil
}

// restClient returns a REST client for gv, under apiPath, that decodes with
// scheme alone.
func restClient(cfg *rest.Config, scheme *runtime.Scheme, gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
	c := rest.CopyConfig(cfg)
	c.GroupVersion, c.APIPath = &gv, apiPath
	c.NegotiatedSerializer = serializer.NewCodecFactory(scheme).WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("create client for %s: %w", gv, err)
	}
	return rc, nil
}

// RESTConfig returns a copy of the configuration the Client was made from,
// for client-go's typed clients of the API groups this package does not
// cover (events, discovery).
func (c *Client) RESTConfig() *rest.Config { return rest.CopyConfig(c.config) }

// Leases are the Lease calls in one namespace.
type Leases = gentype.ClientWithList[*coordinationv1.Lease, *coordinationv1.LeaseList]

// Leases returns the Lease calls for namespace ns.
func (c *Client) Leases(ns string) *Leases {
	return gentype.NewClientWithList("leases", c.coordination, c.params, ns,
		func() *coordinationv1.Lease { return &coordinationv1.Lease{} },
		func() *coordinationv1.LeaseList { return &coordinationv1.LeaseList{} })
}

// Pods are the Pod calls in one namespace.
type Pods = gentype.ClientWithList[*corev1.Pod, *corev1.PodList]

// Pods returns the Pod calls for namespace ns.
func (c *Client) Pods(ns string) *Pods {
	return gentype.NewClientWithList("pods", c.core, c.params, ns,
		func() *corev1.Pod { return &corev1.Pod{} },
		func() *corev1.PodList { return &corev1.PodList{} })
}

// Services are the Service calls in one namespace: the EndpointSlice
// writer reads its Service.
type Services = gentype.Client[*corev1.Service]

// Services returns the Service calls for namespace ns.
func (c *Client) Services(ns string) *Services {
	return gentype.NewClient("services", c.core, c.params, ns, func() *corev1.Service { return &corev1.Service{} })
}

// Endpoints are the core/v1 Endpoints calls in one namespace: the
// EndpointSlice writer reads what k8s-await-election left behind.
type Endpoints = gentype.Client[*corev1.Endpoints]

// Endpoints returns the core/v1 Endpoints calls for namespace ns.
func (c *Client) Endpoints(ns string) *Endpoints {
	return gentype.NewClient("endpoints", c.core, c.params, ns, func() *corev1.Endpoints { return &corev1.Endpoints{} })
}
