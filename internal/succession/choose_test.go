package succession

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var t0 = time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)

// pod is a running, Ready pod of revision rev, created and Ready at the
// given minutes after t0.
func pod(name, rev string, created, readyAt int) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "myapp", "pod-template-hash": rev},
			CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(created) * time.Minute))},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "ip-of-" + name, Conditions: []corev1.PodCondition{
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(time.Duration(readyAt) * time.Minute))}}},
	}
}

func deleting(p *corev1.Pod) *corev1.Pod {
	now := metav1.NewTime(t0.Add(time.Hour))
	p.DeletionTimestamp = &now
	return p
}

func notReady(p *corev1.Pod) *corev1.Pod {
	p.Status.Conditions[0].Status = corev1.ConditionFalse
	return p
}

func phase(p *corev1.Pod, ph corev1.PodPhase) *corev1.Pod {
	p.Status.Phase = ph
	return p
}

func statefulSetPod(p *corev1.Pod) *corev1.Pod {
	rev := p.Labels["pod-template-hash"]
	delete(p.Labels, "pod-template-hash")
	p.Labels["controller-revision-hash"] = rev
	return p
}

func TestChoose(t *testing.T) {
	tests := []struct {
		name string
		pods []*corev1.Pod
		want string
	}{
		{"no peers", []*corev1.Pod{pod("me", "a", 0, 1)}, ""},
		{"the one Ready peer", []*corev1.Pod{pod("me", "a", 0, 1), pod("b", "a", 0, 1)}, "b"},
		{"never a pod being deleted", []*corev1.Pod{deleting(pod("me", "a", 0, 1)), deleting(pod("b", "a", 0, 1)), pod("c", "a", 0, 2)}, "c"},
		{"never a pod that is not Ready", []*corev1.Pod{pod("me", "a", 0, 1), notReady(pod("b", "a", 0, 1)), pod("c", "a", 0, 2)}, "c"},
		{"never a pod that does not run", []*corev1.Pod{pod("me", "a", 0, 1), phase(pod("b", "a", 0, 1), corev1.PodSucceeded)}, ""},
		{"nobody may lead", []*corev1.Pod{pod("me", "a", 0, 1), notReady(pod("b", "a", 0, 1)), deleting(pod("c", "a", 0, 1))}, ""},
		{"the pod Ready the longest", []*corev1.Pod{pod("me", "a", 0, 1), pod("b", "a", 0, 5), pod("c", "a", 0, 3)}, "c"},
		{"the name breaks a tie", []*corev1.Pod{pod("me", "a", 0, 1), pod("c", "a", 0, 3), pod("b", "a", 0, 3)}, "b"},
		{"a rollout: the new revision over an older pod Ready longer",
			[]*corev1.Pod{deleting(pod("me", "old", 0, 1)), pod("old-2", "old", 0, 1), pod("new-1", "new", 10, 11)}, "new-1"},
		{"a rollout whose newest pod is not Ready yet: its revision still counts",
			[]*corev1.Pod{deleting(pod("me", "old", 0, 1)), pod("old-2", "old", 0, 1), pod("new-1", "new", 10, 11), notReady(pod("new-2", "new", 12, 12))}, "new-1"},
		{"a rollout with no Ready pod of the new revision: an old one",
			[]*corev1.Pod{deleting(pod("me", "old", 0, 1)), pod("old-2", "old", 0, 1), notReady(pod("new-1", "new", 10, 10))}, "old-2"},
		{"a pod being deleted tells no revision",
			[]*corev1.Pod{pod("me", "old", 0, 1), pod("old-2", "old", 0, 2), deleting(pod("new-1", "new", 10, 11))}, "old-2"},
		{"a StatefulSet's controller-revision-hash",
			[]*corev1.Pod{statefulSetPod(pod("me", "r1", 0, 1)), statefulSetPod(pod("s-1", "r1", 0, 1)), statefulSetPod(pod("s-2", "r2", 10, 11))}, "s-2"},
		{"pods without a revision label", []*corev1.Pod{pod("me", "", 0, 1), pod("b", "", 0, 4), pod("c", "", 5, 2)}, "c"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ""
			if p := Choose("me", tt.pods); p != nil {
				got = p.Name
			}
			if got != tt.want {
				t.Errorf("Choose = %q, want %q", got, tt.want)
			}
		})
	}
}
