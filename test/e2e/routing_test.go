package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

var deleteNow = metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}

// takeLease writes holder into the Lease as the admin, as another elector
// that took it would. An empty holder is a release, written as client-go's
// ReleaseOnCancel and this sidecar write it: with a leaseDurationSeconds of
// 1 (any other empty holder is no release, see election's package doc).
func takeLease(t *testing.T, f *fleet, holder string) {
	t.Helper()
	leases := cp.Admin.CoordinationV1().Leases(f.ns)
	l, err := leases.Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.NowMicro()
	l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.AcquireTime = &holder, &now, &now
	if holder == "" {
		l.Spec.LeaseDurationSeconds = ptr.To[int32](1)
	}
	if _, err := leases.Update(t.Context(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

const leaderService = "demo-leader"

// controllers are the kube-controller-manager controllers the tests need.
const controllers = "endpointslice,serviceaccount"

// startControllerManager runs the real endpointslice controller (and the
// serviceaccount controller) for this test, and stops it when the test ends.
// Each test gets its own: a controller manager that lived through API server
// restarts may see no change for up to a minute, because client-go's
// reflectors retry a refused watch after a back-off of 0.8 s doubling to 30 s,
// with up to as much again of jitter, that resets only after 2 minutes
// without one. Shared across the package, it left the Service of a later test
// without endpoints for 30 s and more.
func startControllerManager(t *testing.T) {
	t.Helper()
	if err := cp.StartControllerManager(t.Context(), controllers); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopControllerManager(t) })
}

// stopControllerManager stops the running kube-controller-manager, if any.
func stopControllerManager(t *testing.T) {
	t.Helper()
	for _, p := range cp.Processes() {
		if p.Name == "kube-controller-manager" {
			if err := p.Stop(syscall.SIGTERM, 10*time.Second); err != nil {
				t.Logf("stop kube-controller-manager: %v", err)
			}
		}
	}
}

// restartAPIServer stops kube-apiserver, gracefully within grace or killed,
// starts it again, and then starts a new kube-controller-manager: the one
// that waited out the outage might sleep in its back-off (see
// startControllerManager) past any bound the test sets. A new one lists
// everything at once, as the old one would after its back-off.
func restartAPIServer(t *testing.T, grace time.Duration) {
	t.Helper()
	if err := cp.StopAPIServer(grace); err != nil {
		t.Logf("restart: %v", err) // killed instead: a crash restart, as valid a case
	}
	if err := cp.StartAPIServer(t.Context()); err != nil {
		t.Fatal(err)
	}
	stopControllerManager(t)
	if err := cp.StartControllerManager(t.Context(), controllers); err != nil {
		t.Fatal(err)
	}
}

// newRoutedFleet is a fleet whose pods run on a stand-in Node, are Ready, and
// back a Service selecting app=demo,role=leader.
func newRoutedFleet(t *testing.T, n int) *fleet {
	startControllerManager(t)
	f := newFleet(t)
	ctx := t.Context()
	if err := cp.CreateNode(ctx, "node-1"); err != nil {
		t.Fatal(err)
	}
	if err := cp.CreateLeaderService(ctx, f.ns, leaderService, appLabel); err != nil {
		t.Fatal(err)
	}
	// The pods' IPs are for the EndpointSlices alone (which refuse
	// loopback addresses): nothing listens there.
	for i := range n {
		name := fmt.Sprintf("replica-%d", i)
		f.addPod(name, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}, NodeName: "node-1"})
		if err := cp.MarkRunning(ctx, f.ns, name, fmt.Sprintf("10.244.0.%d", i+10)); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

func (f *fleet) endpoints(ctx context.Context) ([]string, error) {
	return cp.ServiceEndpoints(ctx, f.ns, leaderService)
}

// waitRouted waits until the Service names exactly the one pod that has the
// status file, and returns it.
func (f *fleet) waitRouted(timeout time.Duration) string {
	f.t.Helper()
	var last string
	ok := eventually(timeout, func() bool {
		files := f.fileHolders()
		eps, err := f.endpoints(f.t.Context())
		last = fmt.Sprintf("status files %v, endpoints %v (%v)", files, eps, err)
		return err == nil && len(files) == 1 && slices.Equal(eps, files)
	})
	if !ok {
		f.t.Fatalf("the Service does not route to the one leader within %s: %s", timeout, last)
	}
	return f.fileHolders()[0]
}

// TestServiceNeverRoutesToTwoPods runs three labelled sidecars behind a
// Service selecting role=leader, with the real endpointslice controller, and
// samples the Service's EndpointSlices continuously: after start, after
// SIGTERM of the leader, after SIGKILL of the leader (whose pod keeps
// role=leader until the new leader demotes it) and after a restart of
// kube-apiserver, the Service names exactly the pod with the status file,
// and it never names two pods, not for one sample.
func TestServiceNeverRoutesToTwoPods(t *testing.T) {
	f := newRoutedFleet(t, 3)
	sampleLeaders(t, "service endpoints", f.endpoints)
	for i := range 3 {
		f.start(fmt.Sprintf("replica-%d", i), f.kubeconfig, "LABEL_POD_ROLE=true")
	}

	first := f.waitRouted(30 * time.Second)
	t.Logf("routed to %s", first)

	// SIGTERM: demoted and released; the next leader is labelled.
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	second := f.waitRouted(leaseDuration + 10*time.Second)
	if second == first {
		t.Fatalf("still routed to the terminated %s", first)
	}
	t.Logf("after SIGTERM of %s, routed to %s", first, second)

	// SIGKILL: the dead pod keeps role=leader; the new leader demotes it
	// before it labels itself.
	if err := f.byPod(second).Kill(); err != nil {
		t.Fatal(err)
	}
	third := f.waitRouted(leaseDuration + retryPeriod + 10*time.Second)
	if third == second {
		t.Fatalf("still routed to the killed %s", second)
	}
	if !strings.Contains(f.byPod(third).Log(), "demoted a stale leader label") {
		t.Errorf("the new leader %s did not report demoting the stale label of %s", third, second)
	}
	t.Logf("after SIGKILL of %s, routed to %s", second, third)

	// A kube-apiserver restart: no renew can succeed meanwhile, labels may
	// lag; the Service still never names two pods, and settles on one.
	restartAPIServer(t, 5*time.Second)
	fourth := f.waitRouted(2*leaseDuration + 10*time.Second)
	t.Logf("after a kube-apiserver restart, routed to %s", fourth)
	for _, s := range f.all() {
		if !s.Exited() && strings.Contains(s.Log(), "lease watch history is gone (410)") {
			t.Logf("%s re-read the Lease after 410 Gone", s.Opts.Pod)
		}
	}
}

// TestStepDownReportsAFailedLabelPatch: a leader that cannot set its own
// label to follower while stepping down says so in its log and /status. Its
// pod is deleted, so the patch fails: NotFound, or Unauthorized once the API
// server sees that the pod its token is bound to is gone. The handover on
// deletion is off: it would step down first, and on a deletion the label's
// write is not waited for (TestDeletionDoesNotWaitForTheLabel).
func TestStepDownReportsAFailedLabelPatch(t *testing.T) {
	f := newFleet(t)
	f.add(1, "LABEL_POD_ROLE=true", "HANDOVER_ON_DELETE=false")
	leader := f.waitLeader(30*time.Second, true)
	s := f.byPod(leader)
	// The pod disappears: no label can be written any more.
	if err := cp.Admin.CoreV1().Pods(f.ns).Delete(t.Context(), leader, deleteNow); err != nil {
		t.Fatal(err)
	}
	// Make it step down: another holder takes the Lease.
	takeLease(t, f, "intruder")
	ok := eventually(10*time.Second, func() bool {
		st, err := s.Status()
		if err != nil {
			return false
		}
		label, _ := st["label"].(map[string]any)
		return st["is_leader"] == false && label != nil && strings.Contains(toString(label["last_error"]), "label pod "+leader+" role=follower")
	})
	if !ok {
		st, _ := s.Status()
		t.Fatalf("/status does not report the failed label patch: %v", st)
	}
	// Demote gives up after RetryPeriod, then the step-down logs it.
	if !eventually(5*time.Second, func() bool {
		return slices.ContainsFunc(strings.Split(s.Log(), "\n"), func(line string) bool {
			return strings.Contains(line, "stepping down: an output did not follow") && strings.Contains(line, `output="role label"`)
		})
	}) {
		t.Errorf("the log does not report the failed label patch")
	}
}
