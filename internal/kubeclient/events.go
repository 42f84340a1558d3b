package kubeclient

import (
	"fmt"

	typedeventsv1 "k8s.io/client-go/kubernetes/typed/events/v1"
)

// Events returns client-go's typed events.k8s.io/v1 client, on the
// Client's configuration, for the sidecar's Kubernetes Events.
func (c *Client) Events() (typedeventsv1.EventsV1Interface, error) {
	ev, err := typedeventsv1.NewForConfig(c.RESTConfig())
	if err != nil {
		return nil, fmt.Errorf("create events.k8s.io/v1 client: %w", err)
	}
	return ev, nil
}
