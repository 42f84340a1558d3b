package leasestatus

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

var now = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// lease is a Lease held by holder, acquired acquired ago and renewed renewed
// ago, for duration seconds.
func lease(holder string, acquired, renewed time.Duration, duration int32, transitions int32) *coordinationv1.Lease {
	return &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "myapp-lock", Namespace: "prod"},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(holder),
			AcquireTime:          &metav1.MicroTime{Time: now.Add(-acquired)},
			RenewTime:            &metav1.MicroTime{Time: now.Add(-renewed)},
			LeaseDurationSeconds: ptr.To(duration),
			LeaseTransitions:     ptr.To(transitions),
		},
	}
}

func pod(name string, labels map[string]string) corev1.Pod {
	return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func roles(rs ...string) []corev1.Pod {
	var out []corev1.Pod
	for i, r := range rs {
		out = append(out, pod("pod-"+string(rune('0'+i)), map[string]string{"role": r}))
	}
	return out
}

func TestBuild(t *testing.T) {
	modify := func(l *coordinationv1.Lease, f func(*coordinationv1.LeaseSpec)) *coordinationv1.Lease {
		f(&l.Spec)
		return l
	}
	live := func() *coordinationv1.Lease { return lease("pod-0", 75*time.Second, 400*time.Millisecond, 15, 2) }
	tests := []struct {
		name         string
		lease        *coordinationv1.Lease
		pods         []corev1.Pod
		wantCode     int
		wantLive     bool
		wantProblems []string // parts of each problem, in order
	}{
		{name: "live, labels agree", lease: live(), pods: roles("leader", "follower", "follower"), wantCode: 0, wantLive: true},
		{name: "live, no labels used", lease: live(), wantCode: 0, wantLive: true},
		{name: "live, a pod without the label is ignored", lease: live(),
			pods: append(roles("leader"), pod("other", map[string]string{"app": "x"})), wantCode: 0, wantLive: true},
		{name: "no Lease", pods: roles("follower"), wantCode: ExitNoLeader,
			wantProblems: []string{"the Lease prod/myapp-lock does not exist"}},
		{name: "released", lease: modify(live(), func(s *coordinationv1.LeaseSpec) {
			s.HolderIdentity = ptr.To("")
			s.LeaseDurationSeconds = ptr.To[int32](1)
		}),
			wantCode: ExitNoLeader, wantProblems: []string{"no holder: it was released"}},
		{name: "no holder field", lease: modify(live(), func(s *coordinationv1.LeaseSpec) { s.HolderIdentity = nil }),
			wantCode: ExitNoLeader, wantProblems: []string{"no holder"}},
		{name: "expired", lease: lease("pod-0", time.Hour, 20*time.Second, 15, 2), pods: roles("follower"),
			wantCode: ExitNoLeader, wantProblems: []string{`the Lease of "pod-0" expired 5s ago: no live leader`}},
		{name: "expires exactly now", lease: lease("pod-0", time.Hour, 15*time.Second, 15, 2),
			wantCode: ExitNoLeader, wantProblems: []string{"expired 0s ago"}},
		{name: "expired, and a pod still labelled leader", lease: lease("pod-0", time.Hour, time.Minute, 15, 2), pods: roles("leader", "follower"),
			wantCode: ExitNoLeader, wantProblems: []string{"expired 45s ago", "no live leader, yet labelled role=leader: pod-0"}},
		{name: "two pods labelled leader", lease: live(), pods: roles("leader", "leader", "follower"),
			wantCode: ExitDisagree, wantLive: true, wantProblems: []string{"2 pods are labelled role=leader: pod-0, pod-1"}},
		{name: "another pod labelled leader", lease: live(), pods: roles("follower", "leader"),
			wantCode: ExitDisagree, wantLive: true, wantProblems: []string{`the holder "pod-0" is labelled role=follower, not leader`}},
		{name: "no pod labelled leader", lease: live(), pods: roles("follower", "follower"),
			wantCode: ExitDisagree, wantLive: true, wantProblems: []string{`the holder "pod-0" is labelled role=follower`}},
		{name: "holder not a pod", lease: lease("elsewhere", time.Minute, time.Second, 15, 0), pods: roles("leader"),
			wantCode: ExitDisagree, wantLive: true, wantProblems: []string{`the holder "elsewhere" is not among the pods carrying the role label`}},
		{name: "no leaseDurationSeconds", lease: modify(live(), func(s *coordinationv1.LeaseSpec) { s.LeaseDurationSeconds = nil }),
			wantCode: ExitNoLeader, wantProblems: []string{`no leaseDurationSeconds: it cannot say whether "pod-0" still leads`}},
		{name: "no renewTime", lease: modify(live(), func(s *coordinationv1.LeaseSpec) { s.RenewTime = nil }),
			wantCode: ExitNoLeader, wantProblems: []string{"no renewTime"}},
		{name: "zero leaseDurationSeconds", lease: modify(live(), func(s *coordinationv1.LeaseSpec) { s.LeaseDurationSeconds = ptr.To[int32](0) }),
			wantCode: ExitNoLeader, wantProblems: []string{"leaseDurationSeconds of 0"}},
		{name: "empty spec", lease: &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "myapp-lock"}},
			wantCode: ExitNoLeader, wantProblems: []string{"no holder"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := Build("prod", "myapp-lock", tt.lease, tt.pods, "role", "", now)
			if r.ExitCode != tt.wantCode || r.Live != tt.wantLive {
				t.Errorf("exit code %d, live %v; want %d, %v (problems %q)", r.ExitCode, r.Live, tt.wantCode, tt.wantLive, r.Problems)
			}
			if len(r.Problems) != len(tt.wantProblems) {
				t.Fatalf("problems %q, want %d like %q", r.Problems, len(tt.wantProblems), tt.wantProblems)
			}
			for i, want := range tt.wantProblems {
				if !strings.Contains(r.Problems[i], want) {
					t.Errorf("problem %d = %q, want it to contain %q", i, r.Problems[i], want)
				}
			}
			// Both renderings work on every report, malformed ones too.
			var table, js bytes.Buffer
			if err := r.WriteTable(&table); err != nil {
				t.Fatal(err)
			}
			if err := r.WriteJSON(&js); err != nil {
				t.Fatal(err)
			}
			for _, p := range r.Problems {
				if !strings.Contains(table.String(), "PROBLEM: "+p+"\n") {
					t.Errorf("table lacks the problem %q:\n%s", p, table.String())
				}
			}
			var back Report
			if err := json.Unmarshal(js.Bytes(), &back); err != nil || back.ExitCode != r.ExitCode || len(back.Problems) != len(r.Problems) {
				t.Errorf("JSON does not give the report back (%v):\n%s", err, js.String())
			}
		})
	}
}

// TestWriteTable pins the table for a person, live and not.
func TestWriteTable(t *testing.T) {
	tests := []struct {
		name  string
		lease *coordinationv1.Lease
		pods  []corev1.Pod
		want  string
	}{
		{name: "live", lease: lease("pod-0", 75*time.Second, 400*time.Millisecond, 15, 2), pods: roles("leader", "follower"), want: `
LEASE            HOLDER  HELD FOR  TRANSITIONS  RENEW AGE  EXPIRES IN  LABELLED ROLE=LEADER
prod/myapp-lock  pod-0   75s       2            400ms      14.6s       pod-0
OK: pod-0 leads, its Lease is live and only it is labelled role=leader
`},
		{name: "no labels, held for days", lease: lease("pod-0", 50*time.Hour, 1200*time.Millisecond, 15, 7), want: `
LEASE            HOLDER  HELD FOR  TRANSITIONS  RENEW AGE  EXPIRES IN  LABELLED ROLE=LEADER
prod/myapp-lock  pod-0   2d2h      7            1.2s       13.8s       -
OK: pod-0 leads, its Lease is live (no pod carries the role label)
`},
		{name: "expired with two labelled", lease: lease("pod-0", time.Hour, 90*time.Second, 15, 3), pods: roles("leader", "leader"), want: `
LEASE            HOLDER  HELD FOR  TRANSITIONS  RENEW AGE  EXPIRES IN  LABELLED ROLE=LEADER
prod/myapp-lock  pod-0   60m       3            90s        -75s        pod-0,pod-1
PROBLEM: the Lease of "pod-0" expired 75s ago: no live leader
PROBLEM: 2 pods are labelled role=leader: pod-0, pod-1
PROBLEM: no live leader, yet labelled role=leader: pod-0, pod-1
`},
		{name: "no Lease", pods: roles("follower"), want: `
LEASE            HOLDER  HELD FOR  TRANSITIONS  RENEW AGE  EXPIRES IN  LABELLED ROLE=LEADER
prod/myapp-lock  -       -         -            -          -           none
PROBLEM: the Lease prod/myapp-lock does not exist: no replica has ever led
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Build("prod", "myapp-lock", tt.lease, tt.pods, "role", "", now).WriteTable(&b); err != nil {
				t.Fatal(err)
			}
			if got, want := b.String(), strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Errorf("table:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestWriteJSON pins the JSON for a script.
func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	r := Build("prod", "myapp-lock", lease("pod-0", 75*time.Second, 400*time.Millisecond, 15, 2), roles("leader", "follower"), "role", "app=web", now)
	if err := r.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	want := `{
  "namespace": "prod",
  "lease": "myapp-lock",
  "found": true,
  "holder": "pod-0",
  "acquire_time": "2026-11-23T09:58:45Z",
  "renew_time": "2026-11-23T09:59:59.6Z",
  "lease_duration_seconds": 15,
  "transitions": 2,
  "held_for_seconds": 75.000,
  "renew_age_seconds": 0.400,
  "expires_in_seconds": 14.600,
  "live": true,
  "label_key": "role",
  "selector": "app=web",
  "pods": {
    "pod-0": "leader",
    "pod-1": "follower"
  },
  "labelled_leader": [
    "pod-0"
  ],
  "problems": [],
  "exit_code": 0
}
`
	if b.String() != want {
		t.Errorf("JSON:\n%s\nwant:\n%s", b.String(), want)
	}
}
