package testcluster

import (
	"fmt"
	iofs "io/fs"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// KustomizeDeploy renders deploy/ through the overlay kustomization, as
// `kubectl apply -k` of a user's overlay would, with kustomize's own Go
// module. The overlay refers to deploy/ as ../base.
func KustomizeDeploy(overlay string) ([]*unstructured.Unstructured, error) {
	return KustomizeOverlay(map[string]string{"kustomization.yaml": overlay})
}

// KustomizeOverlay renders the overlay made of files (name to content,
// kustomization.yaml among them), which refers to deploy/ as ../base: its
// directories too, such as ../base/components/sidecar.
func KustomizeOverlay(files map[string]string) ([]*unstructured.Unstructured, error) {
	fs := filesys.MakeFsInMemory()
	deploy := filepath.Join(RepoRoot(), "deploy")
	err := filepath.WalkDir(deploy, func(path string, d iofs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(deploy, path)
		return fs.WriteFile(filepath.Join("/base", rel), b)
	})
	if err != nil {
		return nil, fmt.Errorf("kustomize deploy/: %w", err)
	}
	for name, content := range files {
		if err := fs.WriteFile(filepath.Join("/overlay", name), []byte(content)); err != nil {
			return nil, fmt.Errorf("kustomize deploy/: %w", err)
		}
	}
	resmap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/overlay")
	if err != nil {
		return nil, fmt.Errorf("kustomize build deploy/: %w", err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resmap.Resources() {
		m, err := r.Map()
		if err != nil {
			return nil, fmt.Errorf("kustomize build deploy/: %w", err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

// PodOverlay is the overlay that runs deploy/ on a Node in namespace ns
// with only the changes a test needs: the release image from the node's
// registry (pulled by tag, the default pull policy), the app image
// imported into the node (no registry outside can be reached), and, since
// there is no kube-proxy to route the kubernetes Service, the API server's
// address on this machine in KUBERNETES_SERVICE_HOST and _PORT of the
// sidecar.
func (n *Node) PodOverlay(ns string) string { return n.PodOverlayWith(ns, n.Images.Sidecar.Ref) }

// PodOverlayWith is PodOverlay with sidecarRef, an image the node has or
// pulls, in place of the product image.
func (n *Node) PodOverlayWith(ns, sidecarRef string) string {
	return fmt.Sprintf(`apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: %s
resources:
  - ../base
`, ns) + n.NodeChanges(sidecarRef)
}

// NodeChanges is the part of a kustomization that PodOverlay adds to run
// the Deployment myapp on this node: the images (sidecarRef for the
// product's) and the API server's address.
func (n *Node) NodeChanges(sidecarRef string) string {
	sidecar, sidecarTag := SplitRef(sidecarRef)
	app, appTag := SplitRef(n.Images.App.Ref)
	return fmt.Sprintf(`images:
  - name: ghcr.io/leader-elector/leader-elector
    newName: %s
    newTag: %s
  - name: busybox
    newName: %s
    newTag: %s
patches:
  - target: {kind: Deployment, name: myapp}
    patch: |
      - op: add
        path: /spec/template/spec/initContainers/0/env/-
        value: {name: KUBERNETES_SERVICE_HOST, value: %q}
      - op: add
        path: /spec/template/spec/initContainers/0/env/-
        value: {name: KUBERNETES_SERVICE_PORT, value: "%d"}
      - op: add
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: Never
`, sidecar, sidecarTag, app, appTag, n.IP.String(), n.APIPort)
}

// SlowAppStop is an overlay patch, to follow PodOverlay, that makes the
// example's app take 5 s to stop on SIGTERM, as a server that drains its
// connections does. A native sidecar gets its SIGTERM only after that.
const SlowAppStop = `  - target: {kind: Deployment, name: myapp}
    patch: |
      - op: replace
        path: /spec/template/spec/containers/0/command/2
        value: "trap 'sleep 5; exit 0' TERM\nhttpd -p 8081 -h /tmp\nwhile true; do if [ -f /tmp/leader_status ]; then echo leading; else echo following; fi; sleep 5 & wait $!; done\n"
`

// SplitRef splits an image reference with a tag into its name and tag.
func SplitRef(ref string) (name, tag string) {
	i := strings.LastIndex(ref, ":")
	return ref[:i], ref[i+1:]
}
