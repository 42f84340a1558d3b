package kubeclient

import (
	"fmt"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Connect returns a Client for the kubeconfig at path, or for the in-cluster
// configuration (the pod's ServiceAccount token) when path is empty. It
// speaks protobuf, and names itself userAgent to the API server.
func Connect(path, userAgent string) (*Client, error) { return ConnectContext(path, "", userAgent) }

// ConnectContext is Connect with the kubeconfig's context kubeContext in
// place of its current one (kubectl's --context), if not empty.
func ConnectContext(path, kubeContext, userAgent string) (*Client, error) {
	var cfg *rest.Config
	var err error
	if path != "" {
		cfg, err = clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
			&clientcmd.ClientConfigLoadingRules{ExplicitPath: path},
			&clientcmd.ConfigOverrides{CurrentContext: kubeContext}).ClientConfig()
		if err != nil {
			return nil, fmt.Errorf("load KUBECONFIG=%q: %w", path, err)
		}
	} else if kubeContext != "" {
		return nil, fmt.Errorf("--context=%q: no kubeconfig to find it in (KUBECONFIG, ~/.kube/config)", kubeContext)
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		return nil, fmt.Errorf("no KUBECONFIG set and not running in a cluster: %w", err)
	}
	cfg.UserAgent = userAgent
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return New(cfg)
}
