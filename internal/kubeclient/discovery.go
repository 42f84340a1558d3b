package kubeclient

import (
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/gentype"
	"k8s.io/client-go/rest"
)

// Discovery makes the discovery.k8s.io/v1 calls of the EndpointSlice
// writer, on a REST client of its own whose scheme knows only
// discovery.k8s.io/v1, for the reason in the package doc.
type Discovery struct {
	rest   *rest.RESTClient
	params runtime.ParameterCodec
}

// Discovery returns a client for discovery.k8s.io/v1 with the Client's
// configuration.
func (c *Client) Discovery() (*Discovery, error) {
	scheme, err := newScheme(discoveryv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	rc, err := restClient(c.config, scheme, discoveryv1.SchemeGroupVersion, "/apis")
	if err != nil {
		return nil, err
	}
	return &Discovery{rest: rc, params: runtime.NewParameterCodec(scheme)}, nil
}

// EndpointSlices are the EndpointSlice calls in one namespace.
type EndpointSlices = gentype.Client[*discoveryv1.EndpointSlice]

// EndpointSlices returns the EndpointSlice calls for namespace ns.
func (d *Discovery) EndpointSlices(ns string) *EndpointSlices {
	return gentype.NewClient("endpointslices", d.rest, d.params, ns,
		func() *discoveryv1.EndpointSlice { return &discoveryv1.EndpointSlice{} })
}
