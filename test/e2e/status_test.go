package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/leader-elector/leader-elector/internal/commands/leasestatus"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// statusReader makes a ServiceAccount that may only read the Lease and list
// pods, what docs/commands.md says `status` needs, and returns a kubeconfig for it.
func statusReader(t *testing.T, ns, dir string) string {
	t.Helper()
	ctx := t.Context()
	const name = "status-reader"
	if _, err := cp.Admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, ResourceNames: []string{leaseName}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}},
		},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: name, Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, ns, name, dir)
	if err != nil {
		t.Fatal(err)
	}
	return kubeconfig
}

// runStatus runs `leader-elector status` in-process with kubeconfig.
func runStatus(t *testing.T, kubeconfig string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	lookup := func(k string) (string, bool) {
		if k == "KUBECONFIG" {
			return kubeconfig, true
		}
		return "", false
	}
	code = leasestatus.Main(t.Context(), args, lookup, &out, &errb, "leader-elector-e2e")
	return code, out.String(), errb.String()
}

func getLease(t *testing.T, ns string) *coordinationv1.Lease {
	t.Helper()
	l, err := cp.Admin.CoordinationV1().Leases(ns).Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestStatusCommand runs `status` against three sidecars that elected a
// leader, as a user who may only read, and compares its table and its JSON
// with the Lease read before and after it. Then it runs the real binary's
// `await` next to the sidecars, across a handover.
func TestStatusCommand(t *testing.T) {
	f := newFleet(t)
	f.add(3, "LABEL_POD_ROLE=true")
	leader := f.waitLeader(30*time.Second, true)
	reader := statusReader(t, f.ns, f.dir)
	// A follower labels itself after its first observation of the Lease.
	if !eventually(10*time.Second, func() bool {
		pods, err := cp.Admin.CoreV1().Pods(f.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "role=follower"})
		return err == nil && len(pods.Items) == 2
	}) {
		t.Fatal("the two followers are not labelled role=follower within 10s")
	}

	// The table, for a person.
	before := getLease(t, f.ns)
	code, table, stderr := runStatus(t, reader, "-n", f.ns, leaseName)
	readAt := time.Now()
	after := getLease(t, f.ns)
	t.Logf("leader-elector status -n %s %s (exit %d):\n%s%s", f.ns, leaseName, code, table, stderr)
	if code != 0 || stderr != "" {
		t.Fatalf("exit code %d, stderr %q; want 0 and nothing", code, stderr)
	}
	if *before.Spec.LeaseTransitions != *after.Spec.LeaseTransitions || !before.Spec.AcquireTime.Equal(after.Spec.AcquireTime) {
		t.Fatalf("premise: the Lease changed hands while status ran: %v -> %v", before.Spec, after.Spec)
	}
	lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("table has %d lines, want a header, a row and a verdict:\n%s", len(lines), table)
	}
	if got := strings.Fields(lines[0]); !slices.Equal(got, strings.Fields("LEASE HOLDER HELD FOR TRANSITIONS RENEW AGE EXPIRES IN LABELLED ROLE=LEADER")) {
		t.Errorf("header %q", lines[0])
	}
	row := strings.Fields(lines[1])
	if len(row) != 7 {
		t.Fatalf("row %q has %d columns, want 7", lines[1], len(row))
	}
	want := []string{f.ns + "/" + leaseName, *after.Spec.HolderIdentity, "", strconv.Itoa(int(*after.Spec.LeaseTransitions)), "", "", leader}
	for i, w := range want {
		if w != "" && row[i] != w {
			t.Errorf("column %d = %q, want %q (the Lease's)", i, row[i], w)
		}
	}
	// Ages are rounded to 0.1 s; the Lease renews every RETRY_PERIOD.
	age := func(col int, lo, hi time.Duration) {
		d, err := time.ParseDuration(row[col])
		if err != nil || d < lo-100*time.Millisecond || d > hi+100*time.Millisecond {
			t.Errorf("column %d = %q (%v), want within [%s, %s]", col, row[col], err, lo, hi)
		}
	}
	duration := time.Duration(*after.Spec.LeaseDurationSeconds) * time.Second
	age(2, time.Since(after.Spec.AcquireTime.Time)-time.Since(readAt)-time.Second, time.Since(after.Spec.AcquireTime.Time))
	age(4, 0, readAt.Sub(before.Spec.RenewTime.Time))
	age(5, duration-readAt.Sub(before.Spec.RenewTime.Time), duration)
	if wantOK := "OK: " + leader + " leads, its Lease is live and only it is labelled role=leader"; lines[2] != wantOK {
		t.Errorf("verdict %q, want %q", lines[2], wantOK)
	}

	// The JSON, for a script.
	before = getLease(t, f.ns)
	code, js, stderr := runStatus(t, reader, "-n", f.ns, "-o", "json", leaseName)
	after = getLease(t, f.ns)
	t.Logf("leader-elector status -n %s -o json %s (exit %d):\n%s%s", f.ns, leaseName, code, js, stderr)
	var r leasestatus.Report
	if err := json.Unmarshal([]byte(js), &r); err != nil || code != 0 {
		t.Fatalf("exit code %d, %v; want 0 and JSON", code, err)
	}
	switch {
	case !r.Found || !r.Live || r.ExitCode != 0 || len(r.Problems) != 0:
		t.Errorf("found %v, live %v, exit_code %d, problems %q; want a live Lease and no problem", r.Found, r.Live, r.ExitCode, r.Problems)
	case r.Namespace != f.ns || r.Lease != leaseName || r.Holder != *after.Spec.HolderIdentity || r.Transitions != *after.Spec.LeaseTransitions:
		t.Errorf("namespace %q, lease %q, holder %q, transitions %d; the Lease says %q, %d", r.Namespace, r.Lease, r.Holder, r.Transitions, *after.Spec.HolderIdentity, *after.Spec.LeaseTransitions)
	case r.AcquireTime == nil || !r.AcquireTime.Equal(after.Spec.AcquireTime.Time):
		t.Errorf("acquire_time %v, the Lease's %v", r.AcquireTime, after.Spec.AcquireTime)
	case r.RenewTime == nil || r.RenewTime.Before(before.Spec.RenewTime.Time) || r.RenewTime.After(after.Spec.RenewTime.Time):
		t.Errorf("renew_time %v, want one the Lease had: from %v to %v", r.RenewTime, before.Spec.RenewTime, after.Spec.RenewTime)
	case r.LeaseDurationSeconds == nil || *r.LeaseDurationSeconds != *after.Spec.LeaseDurationSeconds:
		t.Errorf("lease_duration_seconds %v, the Lease's %d", r.LeaseDurationSeconds, *after.Spec.LeaseDurationSeconds)
	case !slices.Equal(r.LabelledLeader, []string{leader}) || len(r.Pods) != 3 || r.Pods[leader] != "leader":
		t.Errorf("labelled_leader %q, pods %v; want %s alone of three", r.LabelledLeader, r.Pods, leader)
	}
	// The ages are of one instant: held_for - renew_age is renew_time -
	// acquire_time, and renew_age + expires_in the Lease's duration.
	near := func(what string, got, want time.Duration) {
		if (got - want).Abs() > 2*time.Millisecond {
			t.Errorf("%s = %s, want %s", what, got, want)
		}
	}
	if r.HeldFor != nil && r.RenewAge != nil && r.ExpiresIn != nil && r.RenewTime != nil && r.AcquireTime != nil {
		near("held_for - renew_age", time.Duration(*r.HeldFor-*r.RenewAge), r.RenewTime.Sub(*r.AcquireTime))
		near("renew_age + expires_in", time.Duration(*r.RenewAge+*r.ExpiresIn), duration)
	} else {
		t.Errorf("held_for %v, renew_age %v, expires_in %v: want all three", r.HeldFor, r.RenewAge, r.ExpiresIn)
	}

	// await, the real binary, next to the sidecars.
	var followers []*testcluster.Sidecar
	for _, s := range f.all() {
		if s.Opts.Pod != leader {
			followers = append(followers, s)
		}
	}
	awaitBin := func(ctx context.Context, args ...string) (int, string) {
		cmd := exec.CommandContext(ctx, binary, append([]string{"await"}, args...)...)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if err != nil && !errors.As(err, &exit) {
			t.Errorf("run await: %v", err)
			return -1, ""
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := awaitBin(t.Context(), "--leader", "--timeout", "5s", "--file", f.byPod(leader).StatusFile); code != 0 {
		t.Errorf("await --leader on the leader %s: exit %d %q, want 0", leader, code, out)
	}
	if code, out := awaitBin(t.Context(), "--follower", "--timeout", "5s", "--file", followers[0].StatusFile); code != 0 {
		t.Errorf("await --follower on %s: exit %d %q, want 0", followers[0].Opts.Pod, code, out)
	}
	if code, out := awaitBin(t.Context(), "--leader", "--timeout", "200ms", "--file", followers[0].StatusFile); code != 3 {
		t.Errorf("await --leader --timeout 200ms on the follower %s: exit %d %q, want 3", followers[0].Opts.Pod, code, out)
	}
	// Both followers await leadership; SIGTERM hands it to one of them.
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	type result struct {
		pod  string
		code int
		out  string
		at   time.Time
	}
	results := make(chan result, len(followers))
	for _, s := range followers {
		go func() {
			code, out := awaitBin(ctx, "--leader", "--file", s.StatusFile)
			results <- result{s.Opts.Pod, code, out, time.Now()}
		}()
	}
	// A late watch would see the file at once, so this wait is not needed
	// for correctness; it lets the figure below time the handover rather
	// than the processes' start.
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if err := f.byPod(leader).Terminate(); err != nil {
		t.Fatal(err)
	}
	var first result
	select {
	case first = <-results:
	case <-time.After(leaseDuration + 10*time.Second):
		t.Fatal("no follower's await --leader returned after the leader's SIGTERM")
	}
	cancel()
	second := <-results
	next := f.waitLeader(leaseDuration, true)
	t.Logf("await --leader on %s returned %d, %s after the leader's SIGTERM; the other's was cancelled (%d)", first.pod, first.code, first.at.Sub(start), second.code)
	if first.code != 0 || first.pod != next {
		t.Errorf("await --leader returned %d %q on %s; want 0 on the new leader %s", first.code, first.out, first.pod, next)
	}
	if second.code == 0 {
		t.Errorf("await --leader on %s returned 0 too, while %s leads", second.pod, next)
	}

	// status after the handover, once the new leader has renewed: the new
	// holder, one transition more, and the old leader labelled follower.
	if !eventually(10*time.Second, func() bool {
		l := getLease(t, f.ns)
		return l.Spec.RenewTime != nil && l.Spec.AcquireTime != nil && l.Spec.RenewTime.After(l.Spec.AcquireTime.Time)
	}) {
		t.Fatalf("%s did not renew the Lease within 10s", next)
	}
	code, table, stderr = runStatus(t, reader, "-n", f.ns, leaseName)
	l := getLease(t, f.ns)
	t.Logf("after the handover, leader-elector status -n %s %s (exit %d):\n%s%s", f.ns, leaseName, code, table, stderr)
	row = strings.Fields(strings.Split(table, "\n")[1])
	if code != 0 || len(row) != 7 || row[1] != next || row[3] != strconv.Itoa(int(*l.Spec.LeaseTransitions)) || row[6] != next || *l.Spec.LeaseTransitions != *after.Spec.LeaseTransitions+1 {
		t.Errorf("after the handover to %s: exit %d, row %q; the Lease has transitions %d (before: %d)", next, code, row, *l.Spec.LeaseTransitions, *after.Spec.LeaseTransitions)
	}
}

// TestStatusCommandFindsProblems: no Lease, a Lease it may not read, two
// pods labelled leader, and an expired Lease give the documented exit codes
// and say what is wrong, in the table and in the JSON.
func TestStatusCommandFindsProblems(t *testing.T) {
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	if err := cp.ApplyManifests(ctx, ns, filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml")); err != nil {
		t.Fatal(err) // the pods' ServiceAccount
	}
	reader := statusReader(t, ns, t.TempDir())
	for _, p := range []string{"pod-a", "pod-b"} {
		if _, err := cp.CreatePod(ctx, ns, p, testcluster.PodOptions{Labels: map[string]string{"app": appLabel, "role": "leader"}}); err != nil {
			t.Fatal(err)
		}
	}
	// check runs status as table and as JSON; wantLine starts a line of the
	// table, and a problem of the JSON unless all is well.
	check := func(what string, wantCode int, wantLine string) {
		t.Helper()
		hasLine := func(text string) bool {
			return slices.ContainsFunc(strings.Split(text, "\n"), func(l string) bool { return strings.HasPrefix(l, wantLine) })
		}
		code, table, stderr := runStatus(t, reader, "-n", ns, leaseName)
		t.Logf("%s: exit %d\n%s%s", what, code, table, stderr)
		if code != wantCode || !hasLine(table) {
			t.Errorf("%s: exit %d, table:\n%s%s\nwant exit %d and a line %q", what, code, table, stderr, wantCode, wantLine)
		}
		code, js, stderr := runStatus(t, reader, "-n", ns, "-o", "json", leaseName)
		var r leasestatus.Report
		if err := json.Unmarshal([]byte(js), &r); err != nil || code != wantCode || r.ExitCode != wantCode {
			t.Errorf("%s -o json: exit %d, %v, stderr %q; want exit %d in both:\n%s", what, code, err, stderr, wantCode, js)
		}
		if wantCode != 0 && !hasLine("PROBLEM: "+strings.Join(r.Problems, "\nPROBLEM: ")) {
			t.Errorf("%s -o json: problems %q, want one like %q", what, r.Problems, wantLine)
		}
	}

	check("no Lease", leasestatus.ExitNoLeader, "PROBLEM: the Lease "+ns+"/"+leaseName+" does not exist: no replica has ever led")

	code, out, stderr := runStatus(t, reader, "-n", ns, "other-lock")
	t.Logf("a Lease the reader may not get: exit %d %q %q", code, out, stderr)
	if code != 1 || out != "" || !strings.Contains(stderr, `leader-elector status: read Lease `+ns+`/other-lock: leases.coordination.k8s.io "other-lock" is forbidden`) {
		t.Errorf("a Lease the reader may not get: exit %d, stdout %q, stderr %q; want 1 and one line saying forbidden", code, out, stderr)
	}

	now := metav1.NowMicro()
	l, err := cp.Admin.CoordinationV1().Leases(ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: leaseName},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("pod-a"), AcquireTime: &now, RenewTime: &now,
			LeaseDurationSeconds: ptr.To[int32](3600), LeaseTransitions: ptr.To[int32](4)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check("two pods labelled leader", leasestatus.ExitDisagree, "PROBLEM: 2 pods are labelled role=leader: pod-a, pod-b")

	b, err := cp.Admin.CoreV1().Pods(ns).Get(ctx, "pod-b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	b.Labels["role"] = "follower"
	if _, err := cp.Admin.CoreV1().Pods(ns).Update(ctx, b, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("labels agree", 0, "OK: pod-a leads, its Lease is live and only it is labelled role=leader")

	past := metav1.NewMicroTime(time.Now().Add(-2 * time.Minute))
	l.Spec.RenewTime, l.Spec.LeaseDurationSeconds = &past, ptr.To[int32](15)
	if _, err := cp.Admin.CoordinationV1().Leases(ns).Update(ctx, l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	check("expired Lease", leasestatus.ExitNoLeader, `PROBLEM: the Lease of "pod-a" expired 1`) // 105 s and a little
}
