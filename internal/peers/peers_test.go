package peers

import "testing"

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
