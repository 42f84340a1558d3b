package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// chart is the app.kubernetes.io/name both releases share.
const chart = "web"

// release is one Helm release of the chart in the shared namespace: three
// pods labelled app.kubernetes.io/name=web and app.kubernetes.io/instance=
// <instance>, whose sidecars share the release's own Lease, and a Service
// selecting the release's pod with role=leader.
type release struct {
	f        *fleet
	instance string
	lease    string
	service  string
	pods     []string
}

func (r *release) labels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": chart, "app.kubernetes.io/instance": r.instance}
}

// newRelease creates the release's Service and its three Running, Ready
// pods on node-1, with pod IPs 10.244.<subnet>.10 and up.
func newRelease(t *testing.T, f *fleet, instance, lease string, subnet int) *release {
	t.Helper()
	ctx := t.Context()
	r := &release{f: f, instance: instance, lease: lease, service: "web-" + instance + "-leader"}
	selector := r.labels()
	selector["role"] = "leader"
	_, err := cp.Admin.CoreV1().Services(f.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: r.service},
		Spec: corev1.ServiceSpec{
			Selector: selector,
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create service %s: %v", r.service, err)
	}
	for i := range 3 {
		name := fmt.Sprintf("web-%s-%d", instance, i)
		f.addPod(name, testcluster.PodOptions{Labels: r.labels(), NodeName: "node-1"})
		if err := cp.MarkRunning(ctx, f.ns, name, fmt.Sprintf("10.244.%d.%d", subnet, i+10)); err != nil {
			t.Fatal(err)
		}
		r.pods = append(r.pods, name)
	}
	return r
}

// start starts the sidecars, on the release's Lease (the later LEASE_NAME
// wins over the fleet's).
func (r *release) start() {
	for _, pod := range r.pods {
		r.f.start(pod, r.f.kubeconfig, "LABEL_POD_ROLE=true", "LEASE_NAME="+r.lease)
	}
}

// fileHolders returns the release's pods whose sidecar runs and has the
// status file, looked at twice as fleet.fileHolders does.
func (r *release) fileHolders() []string {
	var out []string
	for _, pod := range r.f.fileHolders() {
		if slices.Contains(r.pods, pod) {
			out = append(out, pod)
		}
	}
	return out
}

func (r *release) leaseState(ctx context.Context) (holder string, transitions int32) {
	l, err := cp.Admin.CoordinationV1().Leases(r.f.ns).Get(ctx, r.lease, metav1.GetOptions{})
	if err != nil {
		return "", -1
	}
	if l.Spec.HolderIdentity != nil {
		holder = *l.Spec.HolderIdentity
	}
	if l.Spec.LeaseTransitions != nil {
		transitions = *l.Spec.LeaseTransitions
	}
	return holder, transitions
}

// labelled returns the release's pods labelled role=leader, from one list.
func (r *release) labelled(ctx context.Context) ([]string, error) {
	sel := r.labels()
	sel["role"] = "leader"
	pods, err := cp.Admin.CoreV1().Pods(r.f.ns).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		out = append(out, p.Name)
	}
	sort.Strings(out)
	return out, nil
}

func (r *release) endpoints(ctx context.Context) ([]string, error) {
	return cp.ServiceEndpoints(ctx, r.f.ns, r.service)
}

// waitLeader waits until one of the release's pods has the status file, the
// release's Lease names it, it alone is labelled leader and the release's
// Service names it alone; it returns that pod.
func (r *release) waitLeader(t *testing.T, timeout time.Duration) string {
	t.Helper()
	var last string
	ok := eventually(timeout, func() bool {
		ctx := t.Context()
		files := r.fileHolders()
		holder, _ := r.leaseState(ctx)
		lab, lerr := r.labelled(ctx)
		eps, eerr := r.endpoints(ctx)
		last = fmt.Sprintf("status files %v, lease holder %q, role=leader on %v (%v), endpoints %v (%v)", files, holder, lab, lerr, eps, eerr)
		return len(files) == 1 && holder == files[0] && slices.Equal(lab, files) && slices.Equal(eps, files)
	})
	if !ok {
		t.Fatalf("release %s: no single routed leader within %s: %s", r.instance, timeout, last)
	}
	return r.fileHolders()[0]
}

func (r *release) role(t *testing.T, pod string) string {
	t.Helper()
	p, err := cp.Admin.CoreV1().Pods(r.f.ns).Get(t.Context(), pod, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p.Labels["role"]
}

// setRole changes a pod's role label as an operator would (empty: remove it).
func (r *release) setRole(t *testing.T, pod, role string) {
	t.Helper()
	var v any = role
	if role == "" {
		v = nil
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{"role": v}}})
	if _, err := cp.Admin.CoreV1().Pods(r.f.ns).Patch(t.Context(), pod, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		t.Fatalf("set role=%q on %s: %v", role, pod, err)
	}
}

// grantLeases applies deploy/rbac.yaml with the Lease names changed to
// names, as a user patches the Role for their own LEASE_NAME.
func grantLeases(t *testing.T, f *fleet, names ...string) {
	t.Helper()
	objs, err := testcluster.ReadManifests(filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	patched := false
	for _, obj := range objs {
		if obj.GetKind() != "Role" {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(obj.Object, "rules")
		for _, rule := range rules {
			m := rule.(map[string]any)
			if _, ok := m["resourceNames"]; ok {
				m["resourceNames"] = toAnySlice(names)
				patched = true
			}
		}
		if err := unstructured.SetNestedSlice(obj.Object, rules, "rules"); err != nil {
			t.Fatal(err)
		}
	}
	if !patched {
		t.Fatal("deploy/rbac.yaml has no Role rule with resourceNames to grant the Leases")
	}
	if err := cp.ApplyObjects(t.Context(), f.ns, objs); err != nil {
		t.Fatal(err)
	}
}

func toAnySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// monitor samples a probe every few milliseconds until stopped; the probe
// says what is wrong in one consistent view, or "" if nothing is.
type monitor struct {
	stop    context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	samples int
	bad     []string
}

func watchFor(t *testing.T, probe func(context.Context) (string, error)) *monitor {
	ctx, stop := context.WithCancel(context.Background())
	m := &monitor{stop: stop, done: make(chan struct{})}
	t.Cleanup(func() { stop(); <-m.done })
	go func() {
		defer close(m.done)
		for ctx.Err() == nil {
			bad, err := probe(ctx)
			m.mu.Lock()
			if err == nil {
				m.samples++
				if bad != "" && len(m.bad) < 20 {
					m.bad = append(m.bad, time.Now().Format("15:04:05.000")+" "+bad)
				}
			}
			m.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return m
}

// check stops m and reports what it saw.
func (m *monitor) check(t *testing.T, what string) {
	t.Helper()
	m.stop()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, b := range m.bad {
		t.Errorf("%s: %s", what, b)
	}
	if m.samples < 2 { // the probe ran at all, before and after
		t.Errorf("%s: only %d samples were taken", what, m.samples)
	}
	t.Logf("%s: %d samples, %d bad", what, m.samples, len(m.bad))
}

func labelStatus(t *testing.T, s *testcluster.Sidecar) map[string]any {
	t.Helper()
	st, err := s.Status()
	if err != nil {
		t.Fatalf("/status of %s: %v", s.Opts.Pod, err)
	}
	label, _ := st["label"].(map[string]any)
	return label
}

// TestLabelsStayWithinTheirRelease runs two releases of one chart in one
// namespace (same app.kubernetes.io/name, different
// app.kubernetes.io/instance), each with three sidecars, its own Lease and
// its own Service selecting role=leader, on the real endpointslice
// controller. Release a hands over twice (SIGTERM, then SIGKILL, whose dead
// pod keeps role=leader until a's next leader demotes it); all the while
// release b's leader keeps role=leader and b's Service names it alone, in
// every sample. Then a's leader keeps its labels right for as long as it
// leads: a role label removed or changed by hand is put back, and a
// follower labelled leader by hand is demoted, with no handover meanwhile.
func TestLabelsStayWithinTheirRelease(t *testing.T) {
	startControllerManager(t)
	f := newFleet(t)
	grantLeases(t, f, leaseName, "web-b-lock")
	if err := cp.CreateNode(t.Context(), "node-1"); err != nil {
		t.Fatal(err)
	}
	a := newRelease(t, f, "a", leaseName, 1)
	b := newRelease(t, f, "b", "web-b-lock", 2)
	a.start()
	b.start()
	aLeader := a.waitLeader(t, 30*time.Second)
	bLeader := b.waitLeader(t, 30*time.Second)
	t.Logf("release a led by %s, release b by %s", aLeader, bLeader)
	for _, r := range []*release{a, b} {
		leader := map[*release]string{a: aLeader, b: bLeader}[r]
		want := "app.kubernetes.io/instance=" + r.instance + ",app.kubernetes.io/name=" + chart
		if got := toString(labelStatus(t, f.byPod(leader))["peer_selector"]); got != want {
			t.Errorf("/status of %s: peer_selector %q, want %q", leader, got, want)
		}
	}

	// b must not notice anything that happens to a.
	bSteady := func(ctx context.Context) (string, error) {
		eps, err := b.endpoints(ctx)
		if err != nil {
			return "", err
		}
		lab, err := b.labelled(ctx)
		if err != nil {
			return "", err
		}
		if !slices.Equal(eps, []string{bLeader}) || !slices.Equal(lab, []string{bLeader}) {
			return fmt.Sprintf("release b: endpoints %v, role=leader on %v; want %s alone", eps, lab, bLeader), nil
		}
		return "", nil
	}
	bDuringHandovers := watchFor(t, bSteady)
	aOne := watchFor(t, func(ctx context.Context) (string, error) {
		eps, err := a.endpoints(ctx)
		if err != nil || len(eps) < 2 {
			return "", err
		}
		return fmt.Sprintf("release a: the Service names %v", eps), nil
	})

	// SIGTERM: a's leader steps down and releases; a's next one takes over.
	if err := f.byPod(aLeader).Terminate(); err != nil {
		t.Fatal(err)
	}
	second := a.waitLeader(t, leaseDuration+10*time.Second)
	if second == aLeader {
		t.Fatalf("release a still routed to the terminated %s", aLeader)
	}
	// SIGKILL: the dead pod keeps role=leader; a's next leader demotes it,
	// and only it: it is a's pod.
	if err := f.byPod(second).Kill(); err != nil {
		t.Fatal(err)
	}
	third := a.waitLeader(t, leaseDuration+retryPeriod+10*time.Second)
	if third == second {
		t.Fatalf("release a still routed to the killed %s", second)
	}
	if got := a.role(t, second); got != "follower" {
		t.Errorf("the killed leader %s of release a says role=%q, want follower", second, got)
	}
	t.Logf("release a: %s -> %s (SIGTERM) -> %s (SIGKILL)", aLeader, second, third)
	aOne.check(t, "release a's Service during its handovers")
	bDuringHandovers.check(t, "release b while a handed over")

	// A restarted container of a's terminated leader is a follower again; it
	// makes no requests, so it does not undo what the leader repairs.
	if err := f.byPod(aLeader).Restart(); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool { return a.role(t, aLeader) == "follower" }) {
		t.Fatalf("the restarted %s did not label itself follower", aLeader)
	}
	bDuringRepairs := watchFor(t, bSteady)

	// Repair while leading: no handover may happen meanwhile.
	leader := f.byPod(third)
	holder, transitions := a.leaseState(t.Context())
	repaired := func(what string, ok func() bool) {
		t.Helper()
		start := time.Now()
		if !eventually(leaseDuration, ok) {
			t.Errorf("%s: not repaired within %s", what, leaseDuration)
			return
		}
		took := time.Since(start)
		if h, tr := a.leaseState(t.Context()); h != holder || tr != transitions || leader.Exited() {
			t.Errorf("%s: the Lease moved from %s (transitions %d) to %s (%d); want it repaired by the same leader", what, holder, transitions, h, tr)
		}
		t.Logf("%s: repaired by %s in %s", what, third, took.Round(time.Millisecond))
	}
	a.setRole(t, third, "")
	repaired("leader's role label removed", func() bool { return a.role(t, third) == "leader" })
	a.setRole(t, third, "follower")
	repaired("leader's role label set to follower", func() bool { return a.role(t, third) == "leader" })
	follower := aLeader
	a.setRole(t, follower, "leader")
	repaired("follower "+follower+" labelled leader", func() bool { return a.role(t, follower) == "follower" })
	if got := a.role(t, third); got != "leader" {
		t.Errorf("the leader %s says role=%q after demoting %s, want leader", third, got, follower)
	}
	if got := a.waitLeader(t, 5*time.Second); got != third {
		t.Errorf("release a routed to %s, want %s", got, third)
	}
	st := labelStatus(t, leader)
	if st["restored"] != float64(2) || st["watching"] != true {
		t.Errorf("/status label of %s = %v, want restored 2 and watching", third, st)
	}
	if d, _ := st["demoted"].(float64); d < 1 {
		t.Errorf("/status label of %s = %v, want the hand-labelled follower counted as demoted", third, st)
	}
	if !strings.Contains(leader.Log(), "put the own role label back") {
		t.Errorf("the log of %s does not report the restored label", third)
	}

	bDuringRepairs.check(t, "release b while a's leader repaired labels")
	if got := b.waitLeader(t, 5*time.Second); got != bLeader {
		t.Errorf("release b routed to %s, want %s throughout", got, bLeader)
	}
	for _, pod := range b.pods {
		if strings.Contains(f.byPod(pod).Log(), "demoted a stale leader label") {
			t.Errorf("a sidecar of release b demoted a pod: %s", f.byPod(pod).LogTail(10))
		}
	}
	for _, pod := range a.pods {
		for _, bp := range b.pods {
			if strings.Contains(f.byPod(pod).Log(), "peer="+bp) {
				t.Errorf("sidecar %s of release a touched %s of release b", pod, bp)
			}
		}
	}
}
