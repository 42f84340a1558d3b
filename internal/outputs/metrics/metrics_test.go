package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leader-elector/leader-elector/election"
)

const self = "pod-a"

var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// fixture is Metrics on a fake clock, with the State the test sets.
type fixture struct {
	m     *Metrics
	clk   *clocktesting.FakeClock
	state election.State
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{clk: clocktesting.NewFakeClock(t0), state: election.State{Identity: self}}
	m, err := New(Config{Lease: "lock", Identity: self, Clock: f.clk, State: func() election.State { return f.state }})
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	return f
}

// set changes the State and tells Observe, as the election does.
func (f *fixture) set(change func(s *election.State)) {
	change(&f.state)
	f.m.Observe(f.state)
}

// compare checks the exposition of the named metrics, exactly.
func (f *fixture) compare(t *testing.T, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(f.m.Gatherer(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// histogram returns the sample count and sum of the histogram name.
func (f *fixture) histogram(t *testing.T, name string) (uint64, float64) {
	t.Helper()
	families, err := f.m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range families {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0, 0
}

func TestNewRequiresState(t *testing.T) {
	if _, err := New(Config{Lease: "lock", Identity: self}); err == nil {
		t.Error("New without State: no error")
	}
}

const stateHelp = `# HELP leader_election_master_status Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name. Master: this replica holds the Lease and its renew deadline has not passed.
# TYPE leader_election_master_status gauge
`

func TestStateGauges(t *testing.T) {
	tests := []struct {
		name  string
		state election.State
		want  string
	}{
		{
			name:  "before the first read",
			state: election.State{Identity: self},
			want: stateHelp + `leader_election_master_status{name="lock"} 0
# HELP leader_elector_is_leader 1 while this replica leads (it holds the Lease and its renew deadline has not passed), else 0.
# TYPE leader_elector_is_leader gauge
leader_elector_is_leader 0
`,
		},
		{
			name:  "follower",
			state: election.State{Identity: self, Leader: "pod-b", Transitions: 4, LastObserved: t0.Add(-1500 * time.Millisecond)},
			want: stateHelp + `leader_election_master_status{name="lock"} 0
# HELP leader_elector_is_leader 1 while this replica leads (it holds the Lease and its renew deadline has not passed), else 0.
# TYPE leader_elector_is_leader gauge
leader_elector_is_leader 0
# HELP leader_elector_lease_observed_age_seconds Seconds since this replica last read the Lease or received a watch event for it. Absent before the first.
# TYPE leader_elector_lease_observed_age_seconds gauge
leader_elector_lease_observed_age_seconds 1.5
# HELP leader_elector_lease_transitions The Lease's spec.leaseTransitions as last observed: it grows with every change of holder (a fencing token). Absent before the Lease was first read.
# TYPE leader_elector_lease_transitions gauge
leader_elector_lease_transitions 4
`,
		},
		{
			name:  "leader",
			state: election.State{Identity: self, Leader: self, IsLeader: true, Transitions: 5, LastObserved: t0, LeadUntil: t0.Add(time.Second)},
			want: stateHelp + `leader_election_master_status{name="lock"} 1
# HELP leader_elector_is_leader 1 while this replica leads (it holds the Lease and its renew deadline has not passed), else 0.
# TYPE leader_elector_is_leader gauge
leader_elector_is_leader 1
# HELP leader_elector_lease_observed_age_seconds Seconds since this replica last read the Lease or received a watch event for it. Absent before the first.
# TYPE leader_elector_lease_observed_age_seconds gauge
leader_elector_lease_observed_age_seconds 0
# HELP leader_elector_lease_transitions The Lease's spec.leaseTransitions as last observed: it grows with every change of holder (a fencing token). Absent before the Lease was first read.
# TYPE leader_elector_lease_transitions gauge
leader_elector_lease_transitions 5
`,
		},
		{
			// Frozen past its renew deadline: it does not lead, whatever the
			// election loop has not yet noticed.
			name:  "leader past its renew deadline",
			state: election.State{Identity: self, Leader: self, IsLeader: true, Transitions: 5, LastObserved: t0.Add(-10 * time.Second), LeadUntil: t0},
			want: stateHelp + `leader_election_master_status{name="lock"} 0
# HELP leader_elector_is_leader 1 while this replica leads (it holds the Lease and its renew deadline has not passed), else 0.
# TYPE leader_elector_is_leader gauge
leader_elector_is_leader 0
# HELP leader_elector_lease_observed_age_seconds Seconds since this replica last read the Lease or received a watch event for it. Absent before the first.
# TYPE leader_elector_lease_observed_age_seconds gauge
leader_elector_lease_observed_age_seconds 10
# HELP leader_elector_lease_transitions The Lease's spec.leaseTransitions as last observed: it grows with every change of holder (a fencing token). Absent before the Lease was first read.
# TYPE leader_elector_lease_transitions gauge
leader_elector_lease_transitions 5
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.state = tt.state
			f.compare(t, tt.want, "leader_election_master_status", "leader_elector_is_leader",
				"leader_elector_lease_transitions", "leader_elector_lease_observed_age_seconds")
		})
	}
}

func TestTransitionsCountsChangesOfHolder(t *testing.T) {
	type obs struct {
		leader      string
		transitions int
	}
	tests := []struct {
		name string
		seen []obs
		want int
	}{
		{"the first holder seen is no change", []obs{{"pod-b", 3}}, 0},
		{"own first term on a new Lease", []obs{{self, 0}}, 0},
		{"release and takeover", []obs{{"pod-b", 3}, {"", 3}, {self, 4}}, 1},
		{"takeover without a release", []obs{{"pod-b", 3}, {"pod-c", 4}}, 1},
		{"the same holder again after a release", []obs{{"pod-b", 3}, {"", 3}, {"pod-b", 4}}, 1},
		{"a vacant Lease first, then a holder", []obs{{"", 2}, {"pod-b", 3}}, 1},
		{"two handovers", []obs{{"pod-b", 3}, {"", 3}, {"pod-c", 4}, {"", 4}, {self, 5}}, 2},
		{"a change of IsLeader alone is none", []obs{{self, 1}, {self, 1}}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			for _, o := range tt.seen {
				f.set(func(s *election.State) { s.Leader, s.Transitions = o.leader, o.transitions })
			}
			f.compare(t, fmt.Sprintf(`# HELP leader_elector_transitions_total Leadership changes this replica saw since it started: the Lease named a new holder, or its leaseTransitions grew. The holder found at the first observation is not counted.
# TYPE leader_elector_transitions_total counter
leader_elector_transitions_total %d
`, tt.want), "leader_elector_transitions_total")
		})
	}
}

// fakeLeases answers every call after taking took on the fake clock.
type fakeLeases struct {
	clk  *clocktesting.FakeClock
	took time.Duration
	err  error
	// watchErr is returned by the next Watch only.
	watchErr error
}

func (l *fakeLeases) answer(lease *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	l.clk.Step(l.took)
	if l.err != nil {
		return nil, l.err
	}
	return lease, nil
}

func (l *fakeLeases) Get(context.Context, string, metav1.GetOptions) (*coordinationv1.Lease, error) {
	return l.answer(&coordinationv1.Lease{})
}

func (l *fakeLeases) List(context.Context, metav1.ListOptions) (*coordinationv1.LeaseList, error) {
	if _, err := l.answer(nil); err != nil {
		return nil, err
	}
	return &coordinationv1.LeaseList{}, nil
}

func (l *fakeLeases) Create(_ context.Context, lease *coordinationv1.Lease, _ metav1.CreateOptions) (*coordinationv1.Lease, error) {
	return l.answer(lease)
}

func (l *fakeLeases) Update(_ context.Context, lease *coordinationv1.Lease, _ metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	return l.answer(lease)
}

func (l *fakeLeases) Watch(context.Context, metav1.ListOptions) (watch.Interface, error) {
	err := l.watchErr
	l.watchErr = nil
	if err != nil {
		return nil, err
	}
	return watch.NewFake(), nil
}

// record is a Lease naming holder, renewed at renew.
func record(holder string, renew time.Time) *coordinationv1.Lease {
	return &coordinationv1.Lease{Spec: coordinationv1.LeaseSpec{HolderIdentity: &holder, RenewTime: &metav1.MicroTime{Time: renew}}}
}

func TestRenewsAndSlowPath(t *testing.T) {
	f := newFixture(t)
	api := &fakeLeases{clk: f.clk, took: 3 * time.Millisecond}
	leases := f.m.Leases(api)
	ctx := context.Background()
	f.set(func(s *election.State) { s.Leader, s.IsLeader, s.LeadUntil = self, true, t0.Add(time.Hour) })

	// Fast path: an update from the cached version.
	renewed := f.clk.Now()
	if _, err := leases.Update(ctx, record(self, renewed), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Slow path: a fresh read, then the update; counted once although the
	// store and the elector may both have read.
	for range 2 {
		if _, err := leases.Get(ctx, "lock", metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	renewed = f.clk.Now()
	if _, err := leases.Update(ctx, record(self, renewed), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// A failed renew is timed too, and leaves the last renew alone.
	api.err = errors.New("connection reset")
	_, _ = leases.Update(ctx, record(self, f.clk.Now()), metav1.UpdateOptions{})
	api.err = nil
	// The release names nobody: no renew.
	if _, err := leases.Update(ctx, record("", f.clk.Now()), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	if n, sum := f.histogram(t, "leader_elector_renew_duration_seconds"); n != 3 || sum < 0.0089 || sum > 0.0091 {
		t.Errorf("renew_duration_seconds: count %d, sum %g; want 3 renews of 3ms", n, sum)
	}
	f.compare(t, fmt.Sprintf(`# HELP leader_election_slowpath_total Total number of slow path exercised in renewing leader leases, as client-go counts it: renews by the leader that first had to read the Lease afresh (its cached version was no longer current, or the write was answered with a conflict). 'name' is the Lease.
# TYPE leader_election_slowpath_total counter
leader_election_slowpath_total{name="lock"} 1
# HELP leader_elector_last_renew_timestamp_seconds The renewTime, in Unix seconds, of this replica's latest successful write of the Lease as its holder; 0 before the first.
# TYPE leader_elector_last_renew_timestamp_seconds gauge
leader_elector_last_renew_timestamp_seconds %g
`, float64(renewed.UnixNano())/1e9), "leader_election_slowpath_total", "leader_elector_last_renew_timestamp_seconds")
}

func TestFollowersReadsAreNoSlowPath(t *testing.T) {
	f := newFixture(t)
	leases := f.m.Leases(&fakeLeases{clk: f.clk})
	ctx := context.Background()
	f.set(func(s *election.State) { s.Leader = "" })
	// A follower reads, then acquires by an update: client-go's acquire, not its slow path.
	if _, err := leases.Get(ctx, "lock", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := leases.Update(ctx, record(self, t0), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := leases.Create(ctx, record(self, t0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.compare(t, `# HELP leader_election_slowpath_total Total number of slow path exercised in renewing leader leases, as client-go counts it: renews by the leader that first had to read the Lease afresh (its cached version was no longer current, or the write was answered with a conflict). 'name' is the Lease.
# TYPE leader_election_slowpath_total counter
leader_election_slowpath_total{name="lock"} 0
`, "leader_election_slowpath_total")
	if n, _ := f.histogram(t, "leader_elector_renew_duration_seconds"); n != 2 {
		t.Errorf("renew_duration_seconds count = %d, want 2: the acquiring update and create", n)
	}
}

func TestHandover(t *testing.T) {
	tests := []struct {
		name string
		// before runs up to the acquiring write, which is sent 2ms later;
		// the status file is published 5ms after that.
		before func(f *fixture)
		create bool
		want   time.Duration // 0: no handover
	}{
		{
			name: "after a release: from seeing it",
			before: func(f *fixture) {
				f.set(func(s *election.State) { s.Leader, s.Transitions, s.HeldUntil = "pod-b", 3, t0.Add(time.Hour) })
				f.clk.Step(time.Second)
				f.set(func(s *election.State) { s.Leader, s.HeldUntil = "", time.Time{} })
			},
			want: 7 * time.Millisecond,
		},
		{
			name: "after the previous holder's expiry: from its end",
			before: func(f *fixture) {
				f.set(func(s *election.State) { s.Leader, s.Transitions, s.HeldUntil = "pod-b", 3, t0.Add(time.Second) })
				// It renewed meanwhile, with no change for Observe; the write sees the latest end.
				f.state.HeldUntil = t0.Add(10 * time.Second)
				f.clk.Step(10 * time.Second)
			},
			want: 7 * time.Millisecond,
		},
		{
			name:   "first start, no Lease: no handover",
			before: func(*fixture) {},
			create: true,
		},
		{
			name: "own term lapsed without a release: no handover",
			before: func(f *fixture) {
				f.set(func(s *election.State) { s.Leader, s.Transitions = self, 3 })
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			api := &fakeLeases{clk: f.clk, took: 2 * time.Millisecond}
			leases := f.m.Leases(api)
			ctx := context.Background()
			tt.before(f)
			var err error
			if tt.create {
				_, err = leases.Create(ctx, record(self, f.clk.Now()), metav1.CreateOptions{})
			} else {
				_, err = leases.Update(ctx, record(self, f.clk.Now()), metav1.UpdateOptions{})
			}
			if err != nil {
				t.Fatal(err)
			}
			f.set(func(s *election.State) { s.Leader, s.HeldUntil = self, time.Time{} })
			f.set(func(s *election.State) { s.IsLeader, s.LeadUntil = true, f.clk.Now().Add(time.Second) })
			f.clk.Step(5 * time.Millisecond) // the status file is written
			if err := f.m.Lead(ctx, f.state); err != nil {
				t.Fatal(err)
			}
			// A second Lead without a new takeover measures nothing.
			if err := f.m.Lead(ctx, f.state); err != nil {
				t.Fatal(err)
			}
			n, sum := f.histogram(t, "leader_elector_handover_seconds")
			switch {
			case tt.want == 0 && n != 0:
				t.Errorf("handover_seconds count = %d, want none", n)
			case tt.want != 0 && (n != 1 || time.Duration(sum*1e9).Round(time.Microsecond) != tt.want):
				t.Errorf("handover_seconds count %d, sum %gs; want one of %s", n, sum, tt.want)
			}
		})
	}
}

// timeoutErr is a net.Error that timed out.
type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

func TestAPIErrorsByOpAndCode(t *testing.T) {
	f := newFixture(t)
	api := &fakeLeases{clk: f.clk}
	leases := f.m.Leases(api)
	gr := coordinationv1.Resource("leases")
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	refused := &url.Error{Op: "Get", URL: "https://10.0.0.1:443", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	calls := []struct {
		ctx  context.Context
		err  error
		call func(ctx context.Context) error
	}{
		{ctx, apierrors.NewNotFound(gr, "lock"), func(ctx context.Context) error {
			_, err := leases.Get(ctx, "lock", metav1.GetOptions{})
			return err
		}},
		{ctx, apierrors.NewConflict(gr, "lock", errors.New("stale")), func(ctx context.Context) error {
			_, err := leases.Update(ctx, record(self, t0), metav1.UpdateOptions{})
			return err
		}},
		{ctx, apierrors.NewConflict(gr, "lock", errors.New("stale")), func(ctx context.Context) error {
			_, err := leases.Update(ctx, record(self, t0), metav1.UpdateOptions{})
			return err
		}},
		{ctx, apierrors.NewAlreadyExists(gr, "lock"), func(ctx context.Context) error {
			_, err := leases.Create(ctx, record(self, t0), metav1.CreateOptions{})
			return err
		}},
		{ctx, apierrors.NewForbidden(gr, "lock", errors.New("no")), func(ctx context.Context) error {
			_, err := leases.List(ctx, metav1.ListOptions{})
			return err
		}},
		{ctx, apierrors.NewServiceUnavailable("etcd"), func(ctx context.Context) error {
			_, err := leases.Get(ctx, "lock", metav1.GetOptions{})
			return err
		}},
		{cancelled, &url.Error{Op: "Put", URL: "https://10.0.0.1:443", Err: context.Canceled}, func(ctx context.Context) error {
			_, err := leases.Update(ctx, record(self, t0), metav1.UpdateOptions{})
			return err
		}},
		{ctx, &url.Error{Op: "Get", URL: "https://10.0.0.1:443", Err: timeoutErr{}}, func(ctx context.Context) error {
			_, err := leases.Get(ctx, "lock", metav1.GetOptions{})
			return err
		}},
		{ctx, refused, func(ctx context.Context) error {
			_, err := leases.Get(ctx, "lock", metav1.GetOptions{})
			return err
		}},
		{ctx, io.ErrUnexpectedEOF, func(ctx context.Context) error {
			_, err := leases.List(ctx, metav1.ListOptions{})
			return err
		}},
		{ctx, errors.New("lease ns/lock: spec.leaseTransitions is -1"), func(ctx context.Context) error {
			_, err := leases.Get(ctx, "lock", metav1.GetOptions{})
			return err
		}},
		{ctx, nil, func(ctx context.Context) error {
			api.watchErr = refused
			_, err := leases.Watch(ctx, metav1.ListOptions{})
			return err
		}},
		{ctx, nil, func(ctx context.Context) error { // succeeds: not counted
			_, err := leases.Get(ctx, "lock", metav1.GetOptions{})
			return err
		}},
	}
	for i, c := range calls {
		api.err = c.err
		if err := c.call(c.ctx); err != nil && !errors.Is(err, c.err) && !errors.Is(err, refused) {
			t.Errorf("call %d returned %v, want %v", i, err, c.err)
		}
	}
	f.compare(t, `# HELP leader_elector_api_errors_total Failed requests to the API server, by op (lease_get, lease_list, lease_create, lease_update, lease_watch, pod_get, pod_list, pod_watch, pod_patch) and code: the HTTP status code of the answer (409 is a lost race for the Lease), or canceled (the sidecar gave up: its deadline passed or it shut down), timeout, network or other.
# TYPE leader_elector_api_errors_total counter
leader_elector_api_errors_total{code="403",op="lease_list"} 1
leader_elector_api_errors_total{code="404",op="lease_get"} 1
leader_elector_api_errors_total{code="409",op="lease_create"} 1
leader_elector_api_errors_total{code="409",op="lease_update"} 2
leader_elector_api_errors_total{code="503",op="lease_get"} 1
leader_elector_api_errors_total{code="canceled",op="lease_update"} 1
leader_elector_api_errors_total{code="network",op="lease_get"} 1
leader_elector_api_errors_total{code="network",op="lease_list"} 1
leader_elector_api_errors_total{code="network",op="lease_watch"} 1
leader_elector_api_errors_total{code="other",op="lease_get"} 1
leader_elector_api_errors_total{code="timeout",op="lease_get"} 1
`, "leader_elector_api_errors_total")
}

// fakePods fails every call with err.
type fakePods struct{ err error }

func (p fakePods) Get(context.Context, string, metav1.GetOptions) (*corev1.Pod, error) {
	return nil, p.err
}
func (p fakePods) List(context.Context, metav1.ListOptions) (*corev1.PodList, error) {
	return nil, p.err
}
func (p fakePods) Watch(context.Context, metav1.ListOptions) (watch.Interface, error) {
	return nil, p.err
}
func (p fakePods) Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*corev1.Pod, error) {
	return nil, p.err
}

func TestPodErrors(t *testing.T) {
	f := newFixture(t)
	pods := f.m.Pods(fakePods{err: apierrors.NewForbidden(corev1.Resource("pods"), "pod-a", errors.New("denied by policy"))})
	ctx := context.Background()
	_, _ = pods.Get(ctx, "pod-a", metav1.GetOptions{})
	_, _ = pods.List(ctx, metav1.ListOptions{})
	_, _ = pods.Watch(ctx, metav1.ListOptions{})
	_, _ = pods.Patch(ctx, "pod-a", types.MergePatchType, nil, metav1.PatchOptions{})
	_, _ = pods.Patch(ctx, "pod-a", types.MergePatchType, nil, metav1.PatchOptions{})
	f.compare(t, `# HELP leader_elector_api_errors_total Failed requests to the API server, by op (lease_get, lease_list, lease_create, lease_update, lease_watch, pod_get, pod_list, pod_watch, pod_patch) and code: the HTTP status code of the answer (409 is a lost race for the Lease), or canceled (the sidecar gave up: its deadline passed or it shut down), timeout, network or other.
# TYPE leader_elector_api_errors_total counter
leader_elector_api_errors_total{code="403",op="pod_get"} 1
leader_elector_api_errors_total{code="403",op="pod_list"} 1
leader_elector_api_errors_total{code="403",op="pod_patch"} 2
leader_elector_api_errors_total{code="403",op="pod_watch"} 1
`, "leader_elector_api_errors_total")
}

func TestWatchRestartsAndErrorCounters(t *testing.T) {
	f := newFixture(t)
	leases := f.m.Leases(&fakeLeases{clk: f.clk})
	for range 3 {
		w, err := leases.Watch(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		w.Stop()
	}
	f.m.StatusFileError(errors.New("read-only file system"))
	f.m.StatusFileError(nil)
	f.m.LabelError(errors.New("forbidden"))
	f.m.LabelError(errors.New("forbidden"))
	f.m.LabelError(nil)
	f.compare(t, `# HELP leader_elector_label_errors_total Failed attempts to write the role label (LABEL_POD_ROLE): the own pod's label, demoting a peer, or reading the peers.
# TYPE leader_elector_label_errors_total counter
leader_elector_label_errors_total 2
# HELP leader_elector_status_file_errors_total Errors writing, removing, watching or restoring the status file.
# TYPE leader_elector_status_file_errors_total counter
leader_elector_status_file_errors_total 1
# HELP leader_elector_watch_restarts_total Watch requests for the Lease after the first: each resumes or restarts a watch that ended or failed.
# TYPE leader_elector_watch_restarts_total counter
leader_elector_watch_restarts_total 2
`, "leader_elector_watch_restarts_total", "leader_elector_status_file_errors_total", "leader_elector_label_errors_total")
}

// TestOnlyOwnRegistry: the registry holds the runtime and process
// collectors and our metrics, each with help text, and nothing that an
// imported package put on the default registry.
func TestOnlyOwnRegistry(t *testing.T) {
	f := newFixture(t)
	// Something on the default registry must not show.
	stray := prometheus.NewCounter(prometheus.CounterOpts{Name: "stray_total", Help: "registered by accident"})
	if err := prometheus.DefaultRegisterer.Register(stray); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { prometheus.DefaultRegisterer.Unregister(stray) })
	// Every family appears once something happened.
	leases := f.m.Leases(&fakeLeases{clk: f.clk, err: apierrors.NewNotFound(coordinationv1.Resource("leases"), "lock")})
	_, _ = leases.Get(context.Background(), "lock", metav1.GetOptions{})
	f.state.LastObserved = t0

	families, err := f.m.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, mf := range families {
		name := mf.GetName()
		got[name] = true
		if mf.GetHelp() == "" {
			t.Errorf("%s has no help text", name)
		}
		if !strings.HasPrefix(name, "go_") && !strings.HasPrefix(name, "process_") &&
			!strings.HasPrefix(name, "leader_election_") && !strings.HasPrefix(name, "leader_elector_") {
			t.Errorf("unexpected metric %s", name)
		}
	}
	for _, name := range []string{
		"go_goroutines", "process_resident_memory_bytes",
		"leader_election_master_status", "leader_election_slowpath_total",
		"leader_elector_is_leader", "leader_elector_transitions_total", "leader_elector_lease_transitions",
		"leader_elector_renew_duration_seconds", "leader_elector_last_renew_timestamp_seconds",
		"leader_elector_lease_observed_age_seconds", "leader_elector_api_errors_total",
		"leader_elector_watch_restarts_total", "leader_elector_status_file_errors_total",
		"leader_elector_label_errors_total", "leader_elector_handover_seconds",
	} {
		if !got[name] {
			t.Errorf("metric %s is missing", name)
		}
	}
}

func TestHandlerServesTextFormat(t *testing.T) {
	f := newFixture(t)
	srv := httptest.NewServer(f.m.Handler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(string(body), "\nleader_election_master_status{name=\"lock\"} 0\n") {
		t.Errorf("GET /metrics = %d %q:\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}
