package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/leader-elector/leader-elector/internal/testcluster"
)

// kustomizeDeploy renders deploy/ with an overlay that sets namespace ns, as
// a user's overlay would, using kustomize's own Go module.
func kustomizeDeploy(t *testing.T, ns string) []*unstructured.Unstructured {
	t.Helper()
	fs := filesys.MakeFsInMemory()
	deploy := filepath.Join(testcluster.RepoRoot(), "deploy")
	entries, err := os.ReadDir(deploy)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(deploy, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := fs.WriteFile(filepath.Join("/base", e.Name()), b); err != nil {
			t.Fatal(err)
		}
	}
	overlay := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + ns + "\nresources:\n  - ../base\n"
	if err := fs.WriteFile("/overlay/kustomization.yaml", []byte(overlay)); err != nil {
		t.Fatal(err)
	}
	resmap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(fs, "/overlay")
	if err != nil {
		t.Fatalf("kustomize build deploy/: %v", err)
	}
	var objs []*unstructured.Unstructured
	for _, r := range resmap.Resources() {
		m, err := r.Map()
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

// TestDeployManifests renders deploy/ with kustomize, applies every object to
// the API server, and checks what the sidecar's ServiceAccount may and may not
// do under it: RBAC and the admission policy together.
func TestDeployManifests(t *testing.T) {
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	objs := kustomizeDeploy(t, ns)
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
	}
	for _, k := range []string{"ServiceAccount", "Role", "RoleBinding", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "Deployment", "Service", "PodDisruptionBudget"} {
		if !kinds[k] {
			t.Errorf("kustomize build deploy/ has no %s", k)
		}
	}
	if err := cp.ApplyObjects(ctx, ns, objs); err != nil {
		t.Fatalf("the API server refused deploy/: %v", err)
	}

	f := &fleet{t: t, ns: ns, dir: t.TempDir()}
	t.Cleanup(f.stop)
	var err error
	if f.kubeconfig, err = cp.ServiceAccountKubeconfig(ctx, ns, testcluster.ServiceAccount, f.dir); err != nil {
		t.Fatal(err)
	}
	f.add(2, "LABEL_POD_ROLE=true")
	leader := f.waitLeader(30*time.Second, true)

	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	pods := sa.CoreV1().Pods(ns)
	patch := func(pod, body string) error {
		_, err := pods.Patch(ctx, pod, types.MergePatchType, []byte(body), metav1.PatchOptions{})
		return err
	}
	// The policy takes effect once the API server has loaded it: probe a
	// throwaway pod with a new value each time (an unchanged label would be
	// no change at all) until the policy denies it.
	if _, err := cp.CreatePod(ctx, ns, "policy-probe", testcluster.PodOptions{}); err != nil {
		t.Fatal(err)
	}
	probes := 0
	var last error
	if !eventually(15*time.Second, func() bool {
		probes++
		last = patch("policy-probe", fmt.Sprintf(`{"metadata":{"labels":{"probe":"%d"}}}`, probes))
		return isAdmissionDenial(last)
	}) {
		t.Fatalf("the admission policy never denied a foreign label: last answer %v", last)
	}

	for _, tc := range []struct {
		name    string
		do      func() error
		allowed bool
	}{
		{"set the own role label", func() error { return patch(leader, `{"metadata":{"labels":{"role":"leader"}}}`) }, true},
		{"set role to an unknown value", func() error { return patch(leader, `{"metadata":{"labels":{"role":"boss"}}}`) }, false},
		{"add another label", func() error { return patch(leader, `{"metadata":{"labels":{"team":"x"}}}`) }, false},
		{"change the app label", func() error { return patch(leader, `{"metadata":{"labels":{"app":"other"}}}`) }, false},
		{"add an annotation", func() error { return patch(leader, `{"metadata":{"annotations":{"a":"b"}}}`) }, false},
		{"change the spec", func() error { return patch(leader, `{"spec":{"activeDeadlineSeconds":5}}`) }, false},
		{"write pod status", func() error {
			_, err := pods.Patch(ctx, leader, types.MergePatchType, []byte(`{"status":{"message":"x"}}`), metav1.PatchOptions{}, "status")
			return err
		}, false},
		{"read another Lease", func() error {
			_, err := sa.CoordinationV1().Leases(ns).Get(ctx, "other-lock", metav1.GetOptions{})
			return err
		}, false},
		{"read Secrets", func() error {
			_, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		}, false},
		{"delete a pod", func() error { return pods.Delete(ctx, leader, metav1.DeleteOptions{}) }, false},
		{"create a pod", func() error {
			_, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			switch {
			case tc.allowed && err != nil:
				t.Errorf("want allowed, got %v", err)
			case !tc.allowed && !apierrors.IsForbidden(err) && !isAdmissionDenial(err):
				t.Errorf("want 403 or an admission denial, got %v", err)
			}
		})
	}

	// The sidecar does its whole job under these manifests: a graceful
	// handover relabels both pods.
	if err := f.byPod(leader).Terminate(); err != nil {
		t.Fatal(err)
	}
	next := f.waitLeader(leaseDuration, true)
	if next == leader {
		t.Fatalf("%s still leads after SIGTERM", leader)
	}
	p, err := cp.Admin.CoreV1().Pods(ns).Get(context.Background(), leader, metav1.GetOptions{})
	if err != nil || p.Labels["role"] != "follower" {
		t.Errorf("the old leader's role label = %q (%v), want follower", p.Labels["role"], err)
	}
}

// isAdmissionDenial reports a ValidatingAdmissionPolicy's refusal.
func isAdmissionDenial(err error) bool {
	return err != nil && (apierrors.IsInvalid(err) || apierrors.IsForbidden(err)) &&
		strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
}
