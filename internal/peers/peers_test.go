package peers

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDefaultSelector(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		want   string // empty: no peers it can tell
	}{
		{name: "name alone", labels: map[string]string{"app.kubernetes.io/name": "web", "pod-template-hash": "abc"}, want: "app.kubernetes.io/name=web"},
		{name: "name before app", labels: map[string]string{"app.kubernetes.io/name": "web", "app": "legacy"}, want: "app.kubernetes.io/name=web"},
		{name: "app alone", labels: map[string]string{"app": "web"}, want: "app=web"},
		{
			name:   "a Helm release: name and instance",
			labels: map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "a", "helm.sh/chart": "web-1.0"},
			want:   "app.kubernetes.io/instance=a,app.kubernetes.io/name=web",
		},
		{name: "app and instance", labels: map[string]string{"app": "web", "app.kubernetes.io/instance": "a"}, want: "app=web,app.kubernetes.io/instance=a"},
		{
			name:   "a component of a release",
			labels: map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "a", "app.kubernetes.io/component": "scheduler"},
			want:   "app.kubernetes.io/component=scheduler,app.kubernetes.io/instance=a,app.kubernetes.io/name=web",
		},
		{name: "instance alone names no workload", labels: map[string]string{"app.kubernetes.io/instance": "a"}},
		{name: "no labels", labels: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DefaultSelector(tt.labels)
			switch {
			case tt.want == "" && got != nil:
				t.Errorf("DefaultSelector(%v) = %q, want nil", tt.labels, got)
			case tt.want != "" && (got == nil || got.String() != tt.want):
				t.Errorf("DefaultSelector(%v) = %v, want %q", tt.labels, got, tt.want)
			}
		})
	}
}

func TestSlimKeepsWhatIsRead(t *testing.T) {
	del := metav1.Now()
	full := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u", ResourceVersion: "7", Labels: map[string]string{"app": "a", "role": "leader"},
			Annotations: map[string]string{"big": "x"}, DeletionTimestamp: &del, CreationTimestamp: metav1.Now(),
			ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubelet"}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.0.0.1", Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue},
			{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}}},
	}
	got, err := Slim(full)
	if err != nil {
		t.Fatal(err)
	}
	p := got.(*corev1.Pod)
	if p.Name != "p" || p.Namespace != "ns" || p.UID != "u" || p.ResourceVersion != "7" || p.Labels["role"] != "leader" ||
		p.DeletionTimestamp == nil || !p.CreationTimestamp.Equal(&full.CreationTimestamp) || p.Status.Phase != corev1.PodRunning {
		t.Errorf("slim pod lost what is read: %+v", p)
	}
	if len(p.Status.Conditions) != 1 || p.Status.Conditions[0].Type != corev1.PodReady || !p.Status.Conditions[0].LastTransitionTime.Equal(&full.Status.Conditions[1].LastTransitionTime) {
		t.Errorf("conditions = %+v, want Ready alone", p.Status.Conditions)
	}
	if len(p.Spec.Containers) != 0 || p.Annotations != nil || p.ManagedFields != nil {
		t.Errorf("slim pod kept its spec, annotations or managed fields: %+v", p)
	}
	if other, _ := Slim("not a pod"); other != "not a pod" {
		t.Errorf("Slim changed a non-pod: %v", other)
	}
}
