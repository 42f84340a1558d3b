package sidecar

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"
)

func readyPod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "myapp"}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue}}},
	}
}

// TestDeletionRetiresTheLeader: the leader whose pod gets its
// deletionTimestamp removes its file, hands the Lease on, and says so in
// /status. Here its Ready peer has no IP and runs no sidecar, so nobody
// takes an offer: the Lease is released, for the others to take at once.
// (The take-over by the peer is tested in real pods, test/e2e/pods.)
func TestDeletionRetiresTheLeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, readyPod("pod-a"), readyPod("pod-b"))
		cfg := testConfig(t)
		cfg.HandoverOnDelete = true
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()
		if !r.s.report().IsLeader {
			t.Fatal("pod-a does not lead")
		}
		markDeleted(t, c, "pod-a")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if _, err := os.Stat(cfg.StatusFile); err == nil {
			t.Error("the status file is still there after the own pod's deletion")
		}
		if l := c.lease(t); holder(l) != "" || l.Spec.LeaseDurationSeconds == nil || *l.Spec.LeaseDurationSeconds != 1 {
			t.Errorf("Lease after the deletion = %+v, want it released", l.Spec)
		}
		if rep := r.s.report(); !rep.Retired || rep.IsLeader {
			t.Errorf("report: retired=%v is_leader=%v, want retired, not leading", rep.Retired, rep.IsLeader)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestHandoverErrorInStatus: a leader that cannot read its own pod says
// why in /status, and leads on.
func TestHandoverErrorInStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t) // no pod-a
		cfg := testConfig(t)
		cfg.HandoverOnDelete = true
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()
		rep := r.s.report()
		if !rep.IsLeader || !strings.Contains(rep.HandoverError, "read own pod pod-a") {
			t.Errorf("report: is_leader=%v handover_on_delete_error=%q, want leading and the error", rep.IsLeader, rep.HandoverError)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// TestDeletionDoesNotWaitForTheLabel: on its pod's deletion the leader
// hands the Lease on without waiting for its follower label, whose write
// here fails (the next leader demotes a peer that still says leader):
// the handover comes at once, not after the label's retries.
func TestDeletionDoesNotWaitForTheLabel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, readyPod("pod-a"), readyPod("pod-b"))
		cfg := testConfig(t)
		cfg.HandoverOnDelete, cfg.LabelPodRole = true, true
		r := start(t, cfg, c, newIdleListener(nil))
		time.Sleep(time.Second)
		synctest.Wait()
		if !r.s.report().IsLeader {
			t.Fatal("pod-a does not lead")
		}
		c.PrependReactor("patch", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewInternalError(errors.New("etcd is slow"))
		})
		markDeleted(t, c, "pod-a")
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if l := c.lease(t); holder(l) == "pod-a" {
			t.Errorf("100ms after the deletion, with the label's write failing, pod-a still holds the Lease: the handover waited for the label (RETRY_PERIOD %s)", cfg.RetryPeriod)
		}
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// markDeleted gives the pod name its deletionTimestamp, as a delete does
// while the kubelet stops the pod.
func markDeleted(t *testing.T, c *cluster, name string) {
	t.Helper()
	own, err := c.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	own.DeletionTimestamp = &now
	if _, err := c.CoreV1().Pods(ns).Update(context.Background(), own, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
