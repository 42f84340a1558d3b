package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leader-elector/leader-elector/internal/outputs/serviceslice"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// sliceService is the Service deploy/service-rbac.yaml grants.
const sliceService = "myapp-leader"

// sliceFleet is a fleet routing the selector-less Service sliceService with
// EndpointSlices, under deploy/'s RBAC plus deploy/service-rbac.yaml, with
// the real endpointslice and endpointslice mirroring controllers running.
type sliceFleet struct {
	*fleet
	ips map[string]string // pod name by IP
}

func newSliceFleet(t *testing.T) *sliceFleet {
	t.Helper()
	if err := cp.StartControllerManager(t.Context(), "endpointslice,endpointslicemirroring,serviceaccount"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopControllerManager(t) })
	f := newFleet(t)
	ctx := t.Context()
	if err := cp.ApplyManifests(ctx, f.ns, filepath.Join(testcluster.RepoRoot(), "deploy", "service-rbac", "service-rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Admin.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: sliceService},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &sliceFleet{fleet: f, ips: map[string]string{}}
}

// add creates pod name with IP ip and starts its sidecar as the writer of
// sliceService.
func (f *sliceFleet) add(name, ip string) {
	f.t.Helper()
	f.addPod(name, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	f.ips[ip] = name
	f.start(name, f.kubeconfig, "SERVICE_NAME="+sliceService, `SERVICE_PORTS=[{"name":"http","port":8080}]`,
		"POD_IP="+ip, "NODE_NAME=node-1")
}

// routed returns what the Service's EndpointSlices name as ready, from one
// consistent list: pod names for the sidecars' IPs, else the IP.
func (f *sliceFleet) routed(ctx context.Context) ([]string, error) {
	list, err := cp.Admin.DiscoveryV1().EndpointSlices(f.ns).List(ctx, metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + sliceService,
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && !*ep.Conditions.Ready {
				continue
			}
			for _, a := range ep.Addresses {
				if pod, ok := f.ips[a]; ok {
					a = pod
				}
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

// waitRouted waits until the Service names exactly the one pod that has the
// status file, and returns it.
func (f *sliceFleet) waitRouted(timeout time.Duration) string {
	f.t.Helper()
	var last string
	ok := eventually(timeout, func() bool {
		files := f.fileHolders()
		eps, err := f.routed(f.t.Context())
		last = fmt.Sprintf("status files %v, endpoints %v (%v)", files, eps, err)
		return err == nil && len(files) == 1 && slices.Equal(eps, files)
	})
	if !ok {
		f.t.Fatalf("the Service does not route to the one leader within %s: %s", timeout, last)
	}
	return f.fileHolders()[0]
}

// TestServiceSliceRoutesToTheLeaderAlone runs three sidecars with
// SERVICE_NAME behind a selector-less Service, with the real endpointslice
// and mirroring controllers, and samples the Service's EndpointSlices every
// few milliseconds: after start, across a SIGTERM handover and a SIGKILL
// failover, the Service names exactly the leader, never two pods, and the
// controllers leave the leader's slice alone.
func TestServiceSliceRoutesToTheLeaderAlone(t *testing.T) {
	f := newSliceFleet(t)
	sampleLeaders(t, "service endpointslices", f.routed)
	for i := range 3 {
		f.add(fmt.Sprintf("replica-%d", i), fmt.Sprintf("10.244.0.%d", i+10))
	}
	first := f.waitRouted(30 * time.Second)
	t.Logf("routed to %s", first)

	// SIGTERM: the leader deletes its slice before it releases the Lease;
	// the next leader creates it again, naming itself.
	sigterm := time.Now()
	if err := f.byPod(first).Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var second string
	if !eventually(leaseDuration+10*time.Second, func() bool {
		eps, err := f.routed(t.Context())
		if err == nil && len(eps) == 1 && eps[0] != first {
			second = eps[0]
			return true
		}
		return false
	}) {
		t.Fatalf("the Service does not name another pod after SIGTERM of %s", first)
	}
	t.Logf("SIGTERM of %s: %s after the signal, the Service's EndpointSlices named %s alone",
		first, time.Since(sigterm).Round(time.Millisecond), second)
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	if got := f.waitRouted(10 * time.Second); got != second {
		t.Fatalf("routed to %s, whose status file exists, not %s", got, second)
	}
	if log := f.byPod(first).Log(); !strings.Contains(log, "deleted the Service's EndpointSlice") {
		t.Errorf("%s did not report deleting its slice on SIGTERM:\n%s", first, log)
	}
	// Where the handover's time went, from both sidecars' logs.
	for _, pod := range []string{first, second} {
		for _, line := range strings.Split(f.byPod(pod).Log(), "\n") {
			for _, m := range []string{"stopped leading", "deleted the Service's EndpointSlice", "released", "started leading", "created the Service's EndpointSlice"} {
				if strings.Contains(line, `msg="`+m) {
					t.Logf("%s: %s", pod, line)
				}
			}
		}
	}

	// SIGKILL: the dead leader's slice stays until the next leader, once the
	// Lease has expired, replaces its endpoint in the same object.
	before, err := cp.Admin.DiscoveryV1().EndpointSlices(f.ns).Get(t.Context(), serviceslice.SliceName(sliceService), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.byPod(second).Kill(); err != nil {
		t.Fatal(err)
	}
	third := f.waitRouted(leaseDuration + retryPeriod + 10*time.Second)
	if third == second {
		t.Fatalf("still routed to the killed %s", second)
	}
	t.Logf("after SIGKILL of %s, routed to %s", second, third)
	// The line is logged right after the write the Service already shows.
	if !eventually(5*time.Second, func() bool {
		return strings.Contains(f.byPod(third).Log(), "replaced the previous endpoint of the Service's EndpointSlice")
	}) {
		t.Errorf("%s did not report replacing the previous endpoint", third)
	}
	after, err := cp.Admin.DiscoveryV1().EndpointSlices(f.ns).Get(t.Context(), before.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.UID != before.UID {
		t.Errorf("the slice was deleted and created again (uid %s, was %s); want the same object updated", after.UID, before.UID)
	}

	// The controllers had the whole test to act, and a moment more: the
	// Service has one slice, ours, untouched by anyone but the sidecars.
	time.Sleep(2 * time.Second)
	list, err := cp.Admin.DiscoveryV1().EndpointSlices(f.ns).List(t.Context(), metav1.ListOptions{
		LabelSelector: discoveryv1.LabelServiceName + "=" + sliceService,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 {
		t.Fatalf("the Service has %d EndpointSlices, want only the sidecars' one", len(list.Items))
	}
	s := list.Items[0]
	if s.Labels[discoveryv1.LabelManagedBy] != serviceslice.ManagedBy || s.Annotations[serviceslice.HolderAnnotation] != third {
		t.Errorf("slice labels %v, annotations %v: want managed-by %s and holder %s", s.Labels, s.Annotations, serviceslice.ManagedBy, third)
	}
	for _, m := range s.ManagedFields {
		if !strings.HasPrefix(m.Manager, "leader-elector") {
			t.Errorf("the slice was also written by %q (%s at %v)", m.Manager, m.Operation, m.Time)
		}
	}
	if after.ResourceVersion != s.ResourceVersion {
		t.Errorf("the slice changed (resourceVersion %s, was %s) while the leader did not write it", s.ResourceVersion, after.ResourceVersion)
	}
	if len(s.Endpoints) != 1 || s.Endpoints[0].NodeName == nil || *s.Endpoints[0].NodeName != "node-1" ||
		s.Endpoints[0].TargetRef == nil || s.Endpoints[0].TargetRef.Name != third || len(s.Ports) != 1 || *s.Ports[0].Port != 8080 {
		t.Errorf("slice endpoints %+v ports %+v: want %s on node-1, port 8080", s.Endpoints, s.Ports, third)
	}
	if len(s.OwnerReferences) != 1 || s.OwnerReferences[0].Kind != "Service" || s.OwnerReferences[0].Name != sliceService {
		t.Errorf("ownerReferences = %+v, want the Service", s.OwnerReferences)
	}
}

// TestServiceSliceWarnsOfALeftoverEndpointsObject: an Endpoints object that
// k8s-await-election left behind is mirrored by the real mirroring
// controller into another slice, so the Service would route to its old
// leader too; the sidecar says so at start, and once the Endpoints object is
// deleted as the warning says, the Service names the leader alone.
func TestServiceSliceWarnsOfALeftoverEndpointsObject(t *testing.T) {
	f := newSliceFleet(t)
	ctx := t.Context()
	if _, err := cp.Admin.CoreV1().Endpoints(f.ns).Create(ctx, &corev1.Endpoints{ //nolint:staticcheck // k8s-await-election writes this deprecated API
		ObjectMeta: metav1.ObjectMeta{Name: sliceService},
		Subsets: []corev1.EndpointSubset{{
			Addresses: []corev1.EndpointAddress{{IP: "10.244.9.99"}},
			Ports:     []corev1.EndpointPort{{Name: "http", Port: 8080}},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if !eventually(30*time.Second, func() bool {
		eps, err := f.routed(ctx)
		return err == nil && slices.Equal(eps, []string{"10.244.9.99"})
	}) {
		t.Fatal("the mirroring controller did not mirror the leftover Endpoints object")
	}
	f.add("replica-0", "10.244.0.10")
	leader := f.waitLeader(30*time.Second, false)
	want := "kubectl delete endpoints -n " + f.ns + " " + sliceService
	if !eventually(10*time.Second, func() bool { return strings.Contains(f.byPod(leader).Log(), want) }) {
		t.Fatalf("no warning naming %q in the log:\n%s", want, f.byPod(leader).Log())
	}
	if !eventually(10*time.Second, func() bool {
		eps, err := f.routed(ctx)
		return err == nil && slices.Equal(eps, []string{"10.244.9.99", leader})
	}) {
		eps, err := f.routed(ctx)
		t.Fatalf("with the leftover, the Service names %v (%v), want the old address and %s", eps, err, leader)
	}
	if err := cp.Admin.CoreV1().Endpoints(f.ns).Delete(ctx, sliceService, metav1.DeleteOptions{}); err != nil { //nolint:staticcheck // as above
		t.Fatal(err)
	}
	if got := f.waitRouted(30 * time.Second); got != leader {
		t.Errorf("routed to %s, want %s", got, leader)
	}
}

// labelledSlice is an EndpointSlice named name of Service service, with one
// endpoint.
func labelledSlice(name, service string) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.10"}}},
	}
}

// TestServiceRBACGrantsOnlyTheSlice: under deploy/rbac.yaml and
// deploy/service-rbac.yaml, the ServiceAccount may do with EndpointSlices,
// Services and Endpoints exactly what the writer does, and no more.
func TestServiceRBACGrantsOnlyTheSlice(t *testing.T) {
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	deploy := filepath.Join(testcluster.RepoRoot(), "deploy")
	if err := cp.ApplyManifests(ctx, ns, filepath.Join(deploy, "rbac", "rbac.yaml"), filepath.Join(deploy, "service-rbac", "service-rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, ns, testcluster.ServiceAccount, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	sa := saClient(t, kubeconfig)
	slicesAPI := sa.DiscoveryV1().EndpointSlices(ns)
	// Labelled with its Service, as the writer's slice is: the admission
	// policy of deploy/ (cluster-wide, once any test applied it) requires it.
	newSlice := func(name string) *discoveryv1.EndpointSlice {
		return labelledSlice(name, sliceService)
	}
	own := serviceslice.SliceName(sliceService)
	// Another slice, made by the admin, for the denials.
	if _, err := cp.Admin.DiscoveryV1().EndpointSlices(ns).Create(ctx, newSlice("other"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{sliceService, "other"} {
		if _, err := cp.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var read *discoveryv1.EndpointSlice
	for _, tc := range []struct {
		name    string
		do      func() error
		allowed bool
	}{
		{"create the slice", func() error { _, err := slicesAPI.Create(ctx, newSlice(own), metav1.CreateOptions{}); return err }, true},
		{"get the slice", func() error { var err error; read, err = slicesAPI.Get(ctx, own, metav1.GetOptions{}); return err }, true},
		{"update the slice", func() error { _, err := slicesAPI.Update(ctx, read, metav1.UpdateOptions{}); return err }, true},
		{"patch the slice", func() error {
			_, err := slicesAPI.Patch(ctx, own, "application/merge-patch+json", []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
			return err
		}, false},
		{"list slices", func() error { _, err := slicesAPI.List(ctx, metav1.ListOptions{}); return err }, false},
		{"watch slices", func() error {
			w, err := slicesAPI.Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}, false},
		{"get another slice", func() error { _, err := slicesAPI.Get(ctx, "other", metav1.GetOptions{}); return err }, false},
		{"delete another slice", func() error { return slicesAPI.Delete(ctx, "other", metav1.DeleteOptions{}) }, false},
		{"get the Service", func() error {
			_, err := sa.CoreV1().Services(ns).Get(ctx, sliceService, metav1.GetOptions{})
			return err
		}, true},
		{"get another Service", func() error { _, err := sa.CoreV1().Services(ns).Get(ctx, "other", metav1.GetOptions{}); return err }, false},
		{"update the Service", func() error {
			svc, err := cp.Admin.CoreV1().Services(ns).Get(ctx, sliceService, metav1.GetOptions{})
			if err != nil {
				return err
			}
			_, err = sa.CoreV1().Services(ns).Update(ctx, svc, metav1.UpdateOptions{})
			return err
		}, false},
		{"get the Endpoints", func() error {
			_, err := sa.CoreV1().Endpoints(ns).Get(ctx, sliceService, metav1.GetOptions{})
			return err
		}, true}, //nolint:staticcheck // the leftover check reads this deprecated API
		{"create Endpoints", func() error { //nolint:staticcheck // as above
			_, err := sa.CoreV1().Endpoints(ns).Create(ctx, &corev1.Endpoints{ObjectMeta: metav1.ObjectMeta{Name: sliceService}}, metav1.CreateOptions{})
			return err
		}, false},
		{"delete the slice", func() error {
			return slicesAPI.Delete(ctx, own, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &read.UID}})
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			switch {
			case tc.allowed && err != nil && !apierrors.IsNotFound(err): // Endpoints: none exists
				t.Errorf("want allowed, got %v", err)
			case !tc.allowed && !apierrors.IsForbidden(err):
				t.Errorf("want 403, got %v", err)
			}
		})
	}
}
