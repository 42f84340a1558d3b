package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// kustomizeDeploy renders deploy/ with an overlay that sets namespace ns, as
// a user's overlay would, using kustomize's own Go module.
func kustomizeDeploy(t *testing.T, ns string) []*unstructured.Unstructured {
	t.Helper()
	objs, err := testcluster.KustomizeDeploy("apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + ns + "\nresources:\n  - ../base\n")
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// TestDeployManifests renders deploy/ with kustomize, applies every object to
// the API server, and checks what the sidecar's ServiceAccount may and may not
// do under it: RBAC and the admission policy together. Sidecars run with
// tokens bound to their pods, as the kubelet mounts them.
func TestDeployManifests(t *testing.T) {
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	objs := kustomizeDeploy(t, ns)
	kinds := map[string]bool{}
	for _, o := range objs {
		kinds[o.GetKind()] = true
	}
	for _, k := range []string{"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service", "PodDisruptionBudget", "NetworkPolicy"} {
		if !kinds[k] {
			t.Errorf("kustomize build deploy/ has no %s", k)
		}
	}
	for _, k := range []string{"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ClusterRole", "ClusterRoleBinding"} {
		if kinds[k] {
			t.Errorf("kustomize build deploy/ has a %s: a namespace admin could not apply it", k)
		}
	}
	// The cluster-scoped, optional part, as a cluster admin applies it.
	policy, err := testcluster.ReadManifests(filepath.Join(testcluster.RepoRoot(), "deploy", "admission-policy", "admission-policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.ApplyObjects(ctx, ns, append(objs, policy...)); err != nil {
		t.Fatalf("the API server refused deploy/: %v", err)
	}

	f := &fleet{t: t, ns: ns, dir: t.TempDir()}
	t.Cleanup(f.stop)
	if f.kubeconfig, err = cp.ServiceAccountKubeconfig(ctx, ns, testcluster.ServiceAccount, f.dir); err != nil {
		t.Fatal(err)
	}
	f.add(2, "LABEL_POD_ROLE=true")
	leader := f.waitLeader(30*time.Second, true)

	// unbound is the ServiceAccount with a token bound to no pod; the
	// leader's client has the token bound to its pod, as its sidecar has.
	unbound := saClient(t, f.kubeconfig)
	leaderClient := saClient(t, f.podKubeconfig(leader))
	patcher := func(c kubernetes.Interface) func(pod, body string) error {
		return func(pod, body string) error {
			_, err := c.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, []byte(body), metav1.PatchOptions{})
			return err
		}
	}
	patch := patcher(leaderClient)
	pods := leaderClient.CoreV1().Pods(ns)
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
		last = patcher(unbound)("policy-probe", fmt.Sprintf(`{"metadata":{"labels":{"probe":"%d"}}}`, probes))
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
			_, err := leaderClient.CoordinationV1().Leases(ns).Get(ctx, "other-lock", metav1.GetOptions{})
			return err
		}, false},
		{"read Secrets", func() error {
			_, err := leaderClient.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
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

	// Whose pod: role=leader only on the pod the token is bound to, and on
	// other pods only role=follower. Two pods without sidecars stand for the
	// own pod and a peer, of another app, so the running sidecars leave them
	// alone; each case first sets the role it starts from as admin, so that
	// the patch under test is a real change.
	for _, name := range []string{"own", "peer"} {
		if _, err := cp.CreatePod(ctx, ns, name, testcluster.PodOptions{Labels: map[string]string{"app": "policy-test"}}); err != nil {
			t.Fatal(err)
		}
	}
	own := saClient(t, f.podKubeconfig("own"))
	for _, tc := range []struct {
		name      string
		client    kubernetes.Interface
		pod       string
		from, to  string // "" is no role label
		allowed   bool
		rejection string // a part of the denial's message
	}{
		{"own pod: leader", own, "own", "follower", "leader", true, ""},
		{"own pod: follower", own, "own", "leader", "follower", true, ""},
		{"own pod: no role label", own, "own", "follower", "", true, ""},
		{"another pod: leader", own, "peer", "follower", "leader", false, "only its own pod role=leader"},
		{"another pod without a label: leader", own, "peer", "", "leader", false, "only its own pod role=leader"},
		{"another pod: demote to follower", own, "peer", "leader", "follower", true, ""},
		{"another pod without a label: follower", own, "peer", "", "follower", true, ""},
		{"another pod: remove the role label", own, "peer", "follower", "", false, "another pod only to follower"},
		{"unbound token: leader", unbound, "own", "follower", "leader", false, "bound to no pod"},
		{"unbound token: demote to follower", unbound, "peer", "leader", "follower", true, ""},
		{"unbound token: remove the role label", unbound, "peer", "follower", "", false, "another pod only to follower"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := setRole(ctx, cp.Admin, ns, tc.pod, tc.from); err != nil {
				t.Fatal(err)
			}
			err := setRole(ctx, tc.client, ns, tc.pod, tc.to)
			switch {
			case tc.allowed && err != nil:
				t.Errorf("want allowed, got %v", err)
			case !tc.allowed && (!isAdmissionDenial(err) || !strings.Contains(err.Error(), tc.rejection)):
				t.Errorf("want an admission denial saying %q, got %v", tc.rejection, err)
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

// TestAdmissionLimitsCreates: RBAC cannot limit create by name, so the
// Role grants create on every Lease and service-rbac.yaml on every
// EndpointSlice of the namespace; the admission policy of deploy/ narrows
// both to the Lease and the slice the Role lets the sidecar update, and the
// slice to its own Service. Without it, the ServiceAccount pre-creates
// another workload's Lease with a day's leaseDurationSeconds (stalling that
// election) and points another Service at an address of its choice.
func TestAdmissionLimitsCreates(t *testing.T) {
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	deploy := filepath.Join(testcluster.RepoRoot(), "deploy")
	if err := cp.ApplyManifests(ctx, ns, filepath.Join(deploy, "rbac", "rbac.yaml"), filepath.Join(deploy, "service-rbac", "service-rbac.yaml"),
		filepath.Join(deploy, "admission-policy", "admission-policy.yaml")); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, ns, testcluster.ServiceAccount, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sa := saClient(t, kubeconfig)
	leases := sa.CoordinationV1().Leases(ns)
	slices := sa.DiscoveryV1().EndpointSlices(ns)
	day := int32(86400)
	lease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("intruder"), LeaseDurationSeconds: &day}}
	}
	// The policy takes effect once the API server has loaded it: create
	// throwaway Leases (RBAC allows the create) until one is denied.
	probes := 0
	var last error
	if !eventually(15*time.Second, func() bool {
		probes++
		_, last = leases.Create(ctx, lease(fmt.Sprintf("policy-probe-%d", probes)), metav1.CreateOptions{})
		return isAdmissionDenial(last)
	}) {
		t.Fatalf("the admission policy never denied a foreign Lease: last answer %v", last)
	}
	own := serviceslice.SliceName(sliceService)
	for _, tc := range []struct {
		name      string
		do        func() error
		rejection string // "" when allowed, else a part of the denial's message
	}{
		{"create the configured Lease", func() error { _, err := leases.Create(ctx, lease("myapp-lock"), metav1.CreateOptions{}); return err }, ""},
		{"create another workload's Lease", func() error {
			_, err := leases.Create(ctx, lease("other-lock"), metav1.CreateOptions{})
			return err
		}, "may create only a leases its Role lets it update"},
		{"create another Service's slice", func() error {
			_, err := slices.Create(ctx, labelledSlice(serviceslice.SliceName("other"), "other"), metav1.CreateOptions{})
			return err
		}, "may create only a endpointslices its Role lets it update"},
		{"create its slice for another Service", func() error {
			_, err := slices.Create(ctx, labelledSlice(own, "other"), metav1.CreateOptions{})
			return err
		}, "named after its Service"},
		{"create its slice without a Service", func() error {
			s := labelledSlice(own, "")
			s.Labels = nil
			_, err := slices.Create(ctx, s, metav1.CreateOptions{})
			return err
		}, "named after its Service"},
		{"create its slice", func() error {
			_, err := slices.Create(ctx, labelledSlice(own, sliceService), metav1.CreateOptions{})
			return err
		}, ""},
		{"update its slice", func() error {
			s, err := slices.Get(ctx, own, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Endpoints[0].Addresses = []string{"10.244.0.11"}
			_, err = slices.Update(ctx, s, metav1.UpdateOptions{})
			return err
		}, ""},
		{"point its slice at another Service", func() error {
			s, err := slices.Get(ctx, own, metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Labels[discoveryv1.LabelServiceName] = "other"
			_, err = slices.Update(ctx, s, metav1.UpdateOptions{})
			return err
		}, "named after its Service"},
		{"in a namespace that did not opt in, nothing is held", func() error {
			// The same ServiceAccount name and Role in a namespace without
			// the label: the policy binds there not at all.
			other, err := cp.Admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "not-opted-in-"}}, metav1.CreateOptions{})
			if err != nil {
				return err
			}
			t.Cleanup(func() { _ = cp.DeleteNamespace(context.Background(), other.Name) })
			if err := cp.ApplyManifests(ctx, other.Name, filepath.Join(deploy, "rbac", "rbac.yaml")); err != nil {
				return err
			}
			kc, err := cp.ServiceAccountKubeconfig(ctx, other.Name, testcluster.ServiceAccount, t.TempDir())
			if err != nil {
				return err
			}
			_, err = saClient(t, kc).CoordinationV1().Leases(other.Name).Create(ctx, lease("other-lock"), metav1.CreateOptions{})
			return err
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			switch {
			case tc.rejection == "" && err != nil:
				t.Errorf("want allowed, got %v", err)
			case tc.rejection != "" && (!isAdmissionDenial(err) || !strings.Contains(err.Error(), tc.rejection)):
				t.Errorf("want an admission denial saying %q, got %v", tc.rejection, err)
			}
		})
	}
	// Nothing denied was written.
	for _, name := range []string{"other-lock"} {
		if _, err := cp.Admin.CoordinationV1().Leases(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("Lease %s: want none, got %v", name, err)
		}
	}
}

// saClient is a client with the credentials of kubeconfig.
func saClient(t *testing.T, kubeconfig string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	return kubernetes.NewForConfigOrDie(cfg)
}

// setRole sets pod's role label to role, or removes it if role is empty.
func setRole(ctx context.Context, c kubernetes.Interface, ns, pod, role string) error {
	value := "null"
	if role != "" {
		value = strconv.Quote(role)
	}
	_, err := c.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, []byte(`{"metadata":{"labels":{"role":`+value+`}}}`), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("set role of %s to %q: %w", pod, role, err)
	}
	return nil
}

// isAdmissionDenial reports a ValidatingAdmissionPolicy's refusal.
func isAdmissionDenial(err error) bool {
	return err != nil && (apierrors.IsInvalid(err) || apierrors.IsForbidden(err)) &&
		strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
}
