package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// TestEventsOfAHandover runs two sidecars under deploy/'s RBAC, has the
// leader repair a stale label and then hand over gracefully, and finds the
// events as `kubectl describe lease` and `kubectl describe pod` find them
// (core/v1 events selected by the object's name, namespace, kind and uid),
// and as `kubectl get events.events.k8s.io --field-selector
// regarding.name=<lease>` does.
func TestEventsOfAHandover(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t)
	uids := map[string]types.UID{}
	for i := range 2 {
		name := "replica-" + strconv.Itoa(i)
		p, err := cp.CreatePod(ctx, f.ns, name, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		if err != nil {
			t.Fatal(err)
		}
		uids[name] = p.UID
		f.start(name, f.kubeconfig, "LABEL_POD_ROLE=true", "POD_UID="+string(p.UID))
	}
	a := f.waitLeader(30*time.Second, true)
	b := "replica-0"
	if a == b {
		b = "replica-1"
	}

	// b labels itself follower as it starts, after the leader may already
	// lead: wait for that patch, or it may overwrite the stale label below
	// itself, and the leader then has nothing to repair.
	if !eventually(30*time.Second, func() bool {
		p, err := cp.Admin.CoreV1().Pods(f.ns).Get(ctx, b, metav1.GetOptions{})
		return err == nil && p.Labels["role"] == "follower"
	}) {
		t.Fatalf("%s did not label itself follower as it started", b)
	}
	// A stale label, as a leader that died while leading leaves it: the
	// leader demotes it.
	if err := setRole(ctx, cp.Admin, f.ns, b, "leader"); err != nil {
		t.Fatal(err)
	}
	if !eventually(30*time.Second, func() bool {
		p, err := cp.Admin.CoreV1().Pods(f.ns).Get(ctx, b, metav1.GetOptions{})
		return err == nil && p.Labels["role"] == "follower"
	}) {
		t.Fatalf("the leader %s did not demote %s's stale label", a, b)
	}
	// The repair's event is recorded after the patch, asynchronously: wait
	// for it before the SIGTERM, which may otherwise come between the two
	// (an event so close to a shutdown can be lost; the README says so).
	if !eventually(10*time.Second, func() bool {
		l, err := cp.Admin.CoreV1().Events(f.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + b})
		return err == nil && slices.ContainsFunc(l.Items, func(e corev1.Event) bool { return e.Reason == "RoleLabelRepaired" })
	}) {
		t.Fatalf("no RoleLabelRepaired event on %s after %s demoted it", b, a)
	}

	if err := f.byPod(a).Terminate(); err != nil {
		t.Fatal(err)
	}
	if next := f.waitLeader(leaseDuration, true); next != b {
		t.Fatalf("leader after %s's SIGTERM = %s, want %s", a, next, b)
	}

	lease, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	podRef := func(name string) corev1.ObjectReference {
		return corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: f.ns, Name: name, UID: uids[name]}
	}
	leaseRef := corev1.ObjectReference{Kind: "Lease", APIVersion: "coordination.k8s.io/v1", Namespace: f.ns, Name: leaseName, UID: lease.UID}
	type want struct {
		typ, reason, note  string
		regarding, related corev1.ObjectReference
	}
	onLease := []want{
		{"Normal", "LeaderElection", a + " became leader", leaseRef, podRef(a)},
		{"Normal", "LeaderElection", a + " stopped leading", leaseRef, podRef(a)},
		{"Normal", "LeaderElection", b + " became leader", leaseRef, podRef(b)},
	}
	onPod := []want{
		{"Warning", "RoleLabelRepaired", a + " set the role label of pod " + b + " to follower (was leader)", podRef(b), podRef(a)},
	}

	// missing returns the wanted events not in the core/v1 list got.
	missing := func(ws []want, got []corev1.Event) []want {
		var out []want
		for _, w := range ws {
			found := false
			for _, e := range got {
				found = found || (e.Type == w.typ && e.Reason == w.reason && e.Message == w.note &&
					e.InvolvedObject == w.regarding && e.Related != nil && *e.Related == w.related &&
					e.ReportingController == "leader-elector")
			}
			if !found {
				out = append(out, w)
			}
		}
		return out
	}
	// describe lists what `kubectl describe` shows for obj.
	describe := func(obj runtime.Object) ([]corev1.Event, error) {
		l, err := cp.Admin.CoreV1().Events(f.ns).SearchWithContext(ctx, scheme.Scheme, obj)
		if err != nil {
			return nil, err
		}
		return l.Items, nil
	}
	pod, err := cp.Admin.CoreV1().Pods(f.ns).Get(ctx, b, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var last string
	// The events are written asynchronously; the old leader's last one
	// before it exited.
	if !eventually(10*time.Second, func() bool {
		onL, errL := describe(lease)
		onP, errP := describe(pod)
		m := append(missing(onLease, onL), missing(onPod, onP)...)
		last = fmt.Sprintf("missing %+v; lease has %s (%v), pod %s has %s (%v)", m, notes(onL), errL, b, notes(onP), errP)
		return errL == nil && errP == nil && len(m) == 0
	}) {
		t.Fatalf("kubectl describe would not show the events: %s", last)
	}

	// kubectl get events.events.k8s.io --field-selector regarding.name=<lease>
	l, err := cp.Admin.EventsV1().Events(f.ns).List(ctx, metav1.ListOptions{FieldSelector: "regarding.name=" + leaseName})
	if err != nil {
		t.Fatal(err)
	}
	var got []corev1.Event
	for _, e := range l.Items {
		if e.Regarding.Name != leaseName {
			t.Errorf("the field selector regarding.name=%s returned an event regarding %s", leaseName, e.Regarding.Name)
		}
		got = append(got, asCore(e))
	}
	if m := missing(onLease, got); len(m) != 0 {
		t.Errorf("events.k8s.io/v1 with regarding.name=%s misses %+v; has %s", leaseName, m, notes(got))
	}
	for _, e := range l.Items {
		t.Logf("%s\t%s\t%s\t%s/%s\t%s", e.Type, e.Reason, e.Action, e.Regarding.Kind, e.Regarding.Name, e.Note)
	}
}

// asCore is the core/v1 view of an events.k8s.io/v1 event, in the fields the
// test compares.
func asCore(e eventsv1.Event) corev1.Event {
	return corev1.Event{Type: e.Type, Reason: e.Reason, Message: e.Note, InvolvedObject: e.Regarding, Related: e.Related,
		ReportingController: e.ReportingController}
}

func notes(evs []corev1.Event) string {
	var out []string
	for _, e := range evs {
		out = append(out, fmt.Sprintf("%q", e.Reason+": "+e.Message))
	}
	return "[" + strings.Join(out, ", ") + "]"
}

// TestEventsRBAC checks, with real requests under deploy/'s RBAC, that the
// ServiceAccount can write events the way the broadcaster does, and nothing
// more about events.
func TestEventsRBAC(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t)
	other := testcluster.Namespace(t, cp)
	c := saClient(t, f.kubeconfig)
	ev := c.EventsV1().Events(f.ns)
	event := func(ns string) *eventsv1.Event {
		return &eventsv1.Event{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "rbac-probe-", Namespace: ns},
			EventTime:  metav1.NowMicro(), ReportingController: "leader-elector", ReportingInstance: "probe",
			Action: "BecameLeader", Reason: "LeaderElection", Type: corev1.EventTypeNormal, Note: "probe became leader",
			Regarding: corev1.ObjectReference{Kind: "Lease", APIVersion: "coordination.k8s.io/v1", Namespace: ns, Name: leaseName},
		}
	}
	created, err := ev.Create(ctx, event(f.ns), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create an event: %v", err)
	}
	// The patch the broadcaster sends for a repeated event.
	series := fmt.Sprintf(`{"series":{"count":2,"lastObservedTime":%q}}`, metav1.NowMicro().Format(metav1.RFC3339Micro))
	for _, tc := range []struct {
		name    string
		do      func() error
		allowed bool
	}{
		{"create an event", func() error { _, err := ev.Create(ctx, event(f.ns), metav1.CreateOptions{}); return err }, true},
		{"patch an event into a series", func() error {
			_, err := ev.Patch(ctx, created.Name, types.StrategicMergePatchType, []byte(series), metav1.PatchOptions{})
			return err
		}, true},
		{"get an event", func() error { _, err := ev.Get(ctx, created.Name, metav1.GetOptions{}); return err }, false},
		{"list events", func() error { _, err := ev.List(ctx, metav1.ListOptions{}); return err }, false},
		{"watch events", func() error {
			w, err := ev.Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}, false},
		{"update an event", func() error {
			e := created.DeepCopy()
			e.Note = "changed"
			_, err := ev.Update(ctx, e, metav1.UpdateOptions{})
			return err
		}, false},
		{"delete an event", func() error { return ev.Delete(ctx, created.Name, metav1.DeleteOptions{}) }, false},
		{"delete all events", func() error {
			return ev.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
		}, false},
		{"create an event in another namespace", func() error {
			_, err := c.EventsV1().Events(other).Create(ctx, event(other), metav1.CreateOptions{})
			return err
		}, false},
		{"create a core/v1 event", func() error {
			_, err := c.CoreV1().Events(f.ns).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: "rbac-probe-"},
				InvolvedObject: corev1.ObjectReference{Kind: "Lease", Namespace: f.ns, Name: leaseName},
				Reason:         "LeaderElection", Message: "probe", Type: corev1.EventTypeNormal,
			}, metav1.CreateOptions{})
			return err
		}, false},
		{"list secrets", func() error { _, err := c.CoreV1().Secrets(f.ns).List(ctx, metav1.ListOptions{}); return err }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			switch {
			case tc.allowed && err != nil:
				t.Errorf("want allowed, got %v", err)
			case !tc.allowed && !apierrors.IsForbidden(err):
				t.Errorf("want 403, got %v", err)
			}
		})
	}
}

// TestEventsRefusedDoNotMatter: a Role without the events rule (an
// older deploy/): every event write is refused, and the election, the
// handover and the exit go on as ever.
func TestEventsRefusedDoNotMatter(t *testing.T) {
	ctx := t.Context()
	f := newFleet(t)
	role, err := cp.Admin.RbacV1().Roles(f.ns).Get(ctx, testcluster.ServiceAccount, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kept := role.Rules[:0]
	for _, r := range role.Rules {
		if len(r.APIGroups) != 1 || r.APIGroups[0] != "events.k8s.io" {
			kept = append(kept, r)
		}
	}
	role.Rules = kept
	if _, err := cp.Admin.RbacV1().Roles(f.ns).Update(ctx, role, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.add(2)
	a := f.waitLeader(30*time.Second, false)
	if !eventually(10*time.Second, func() bool { return strings.Contains(f.byPod(a).Log(), "events.k8s.io") }) {
		t.Errorf("the refused event is not in %s's log", a)
	}
	began := time.Now()
	if err := f.byPod(a).Terminate(); err != nil {
		t.Fatal(err)
	}
	next := f.waitLeader(leaseDuration, false)
	t.Logf("handover with every event refused: %s -> %s in %s", a, next, time.Since(began).Round(time.Millisecond))
	if next == a {
		t.Fatalf("%s still leads after SIGTERM", a)
	}
	l, err := cp.Admin.EventsV1().Events(f.ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Items) != 0 {
		t.Errorf("%d events written without the RBAC to write them", len(l.Items))
	}
}
