package chaos

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// Two Helm releases of one chart in one namespace: the same
// app.kubernetes.io/name, a different app.kubernetes.io/instance.
const (
	appName       = "myapp"
	nameLabel     = "app.kubernetes.io/name"
	instanceLabel = "app.kubernetes.io/instance"
	roleKey       = "role"
	nodeName      = "chaos-node"
	replicasEach  = 3
)

var instances = []string{"alpha", "beta"}

// workload is one release: its own ServiceAccount, Role and RoleBinding
// (deploy/rbac.yaml renamed, granting its own Lease), Lease, and Service
// selecting its leader.
type workload struct {
	name     string // app.kubernetes.io/instance
	ns       string
	lease    string
	sa       string
	service  string
	binding  *unstructured.Unstructured // for restoring a revoked RoleBinding
	role     *unstructured.Unstructured // and a Role that lost a verb
	replicas []*replica
}

// world is the namespace with both workloads, their sidecars and the
// recorders watching them.
type world struct {
	t   *testing.T
	run *chaosRun
	// client is the admin's without a client-side rate limit, for the
	// recorders and the checks: they must not queue behind each other.
	client    kubernetes.Interface
	ns        string
	dir       string
	env       []string
	workloads []*workload
	replicas  []*replica
	// twins are a second sidecar process for each replica, with its
	// identity and pod UID and a status file of its own; run only by the
	// twin-follower fault.
	twins map[*replica]*replica
	// gatekept is a third release whose sidecars run the gatekeeper, only
	// in the rounds of the gatekeeper-fork fault.
	gatekept *workload

	tracker  *fileTracker
	files    *fileRecorder
	api      *apiRecorders
	routed   *setTracker
	labelled *setTracker

	recent sync.Map // *replica -> *requestLog
	// thawedWrites are writes that arrived after SIGCONT while the status
	// file still existed, until their answer (thawedWrite -> true).
	thawedWrites sync.Map

	stopRecorders context.CancelFunc
	recorders     sync.WaitGroup
}

// requestLog keeps a replica's last requests, for failure output.
type requestLog struct {
	mu   sync.Mutex
	reqs []testcluster.Request
}

// add notes r and, for a watch, returns how many watches started within
// the RETRY_PERIOD up to it.
func (l *requestLog) add(r testcluster.Request) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = append(l.reqs, r)
	if len(l.reqs) > 40 {
		l.reqs = l.reqs[len(l.reqs)-40:]
	}
	if !r.Watch {
		return 0
	}
	n := 0
	for _, q := range l.reqs {
		if q.Watch && r.Time.Sub(q.Time) < retryPeriod {
			n++
		}
	}
	return n
}

func (l *requestLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, r := range l.reqs {
		w := ""
		if r.Watch {
			w = " (watch)"
		}
		fmt.Fprintf(&b, "  %s %s %s%s\n", r.Time.Format("15:04:05.000"), r.Method, r.Path, w)
	}
	return b.String()
}

// rbacFor renders deploy/rbac.yaml for one release, as a chart would: the
// objects get the release's name, and the Role grants the release's Lease.
func rbacFor(w *workload) ([]*unstructured.Unstructured, error) {
	objs, err := testcluster.ReadManifests(filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml"))
	if err != nil {
		return nil, err
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "ServiceAccount", "Role":
			o.SetName(w.sa)
		case "RoleBinding":
			o.SetName(w.sa)
			_ = unstructured.SetNestedField(o.Object, w.sa, "roleRef", "name")
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subjects {
				if m, ok := s.(map[string]any); ok && m["kind"] == "ServiceAccount" {
					m["name"] = w.sa
				}
			}
			_ = unstructured.SetNestedSlice(o.Object, subjects, "subjects")
		default:
			return nil, fmt.Errorf("deploy/rbac.yaml: unexpected %s %s", o.GetKind(), o.GetName())
		}
		if o.GetKind() != "Role" {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, rule := range rules {
			m, _ := rule.(map[string]any)
			if names, ok := m["resourceNames"].([]any); ok && len(names) > 0 {
				m["resourceNames"] = []any{w.lease}
			}
		}
		_ = unstructured.SetNestedSlice(o.Object, rules, "rules")
	}
	return objs, nil
}

// connect gives r its proxy to the API server, with token, and a kubeconfig
// for it that the sidecar's user can read.
func connect(t *testing.T, r *replica, token string) error {
	var err error
	if r.proxy, err = testcluster.NewProxy(cp.URL, cp.CAData, token); err != nil {
		return err
	}
	t.Cleanup(r.proxy.Close)
	r.kubeconfig = filepath.Join(r.dir, "kubeconfig")
	if err := testcluster.WriteKubeconfig(r.kubeconfig, r.proxy.URL, nil, ""); err != nil {
		return err
	}
	return os.Chown(r.kubeconfig, sidecarUID, sidecarUID)
}

// newWorld sets up both workloads and starts the recorders and sidecars.
func newWorld(t *testing.T, run *chaosRun) *world {
	t.Helper()
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	dir, err := testcluster.TempDir("chaos")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	wd := &world{t: t, run: run, ns: ns, dir: dir,
		env: []string{
			"LEASE_DURATION=" + leaseDuration.String(),
			"RENEW_DEADLINE=" + renewDeadline.String(),
			"RETRY_PERIOD=" + retryPeriod.String(),
			"LABEL_POD_ROLE=true",
			// The stream-flood fault opens GET /watch streams: on, so that
			// it meets the caps and not the refusal.
			"HEALTH_STREAMS=true",
			// As deploy/example.yaml sets it, from the memory limit.
			"GOMEMLIMIT=" + strconv.Itoa(exampleMemoryLimit),
		},
		tracker: newFileTracker(), routed: newSetTracker(), labelled: newSetTracker(),
		twins: map[*replica]*replica{},
	}
	cfg := rest.CopyConfig(cp.AdminConfig)
	cfg.QPS, cfg.UserAgent = -1, "chaos-recorder"
	if wd.client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	// CHAOS_SIDECAR_ENV adds variables to every sidecar (space-separated
	// KEY=VALUE; "{instance}" becomes the workload's), for runs against
	// other builds.
	wd.env = append(wd.env, strings.Fields(os.Getenv("CHAOS_SIDECAR_ENV"))...)
	if err := cp.CreateNode(ctx, nodeName); err != nil {
		t.Fatal(err)
	}
	for wi, name := range instances {
		w, err := wd.addWorkload(ctx, wi+1, name, replicasEach)
		if err != nil {
			t.Fatal(err)
		}
		wd.workloads = append(wd.workloads, w)
		wd.replicas = append(wd.replicas, w.replicas...)
	}
	// gamma runs the gatekeeper, in the rounds of gatekeeper-fork only.
	var err2 error
	if wd.gatekept, err2 = wd.addWorkload(ctx, len(instances)+1, "gamma", 2); err2 != nil {
		t.Fatal(err2)
	}
	// The mechanism of the read-only fault must bite: the sidecar's user can
	// write its emptyDir now, and cannot once it is read-only.
	r0 := wd.replicas[0]
	if ok, err := canWriteAs(sidecarUID, r0.emptyDir); err != nil || !ok {
		t.Fatalf("uid %d cannot write its emptyDir %s (%v): the sidecars could not run", sidecarUID, r0.emptyDir, err)
	}
	if err := os.Chmod(r0.emptyDir, 0o555); err != nil {
		t.Fatal(err)
	}
	ok, err := canWriteAs(sidecarUID, r0.emptyDir)
	_ = os.Chmod(r0.emptyDir, 0o755)
	if err != nil || ok {
		t.Fatalf("uid %d can still write its read-only emptyDir (%v): the read-only fault would not bite", sidecarUID, err)
	}

	if err := wd.createCanary(ctx); err != nil {
		t.Fatal(err)
	}
	wd.startRecorders()
	for _, r := range wd.replicas {
		r := r
		r.proxy.Observe(func(req testcluster.Request) { wd.observeRequest(r, req) })
		r.proxy.ObserveAnswers(func(req testcluster.Request, status int) { wd.observeAnswer(r, req, status) })
		if err := wd.start(r); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(wd.stop)
	return wd
}

// addWorkload creates a release named name with n replicas, its pods'
// addresses in 10.244.<subnet>.0/24: its ServiceAccount, RBAC, token,
// Service, pods, and each replica's directories, proxy and twin.
func (wd *world) addWorkload(ctx context.Context, subnet int, name string, n int) (*workload, error) {
	t, ns, dir := wd.t, wd.ns, wd.dir
	w := &workload{name: name, ns: ns, lease: name + "-lock", sa: "leader-elector-" + name, service: name + "-leader"}
	objs, err := rbacFor(w)
	if err != nil {
		return nil, err
	}
	if err := cp.ApplyObjects(ctx, ns, objs); err != nil {
		return nil, err
	}
	for _, o := range objs {
		switch o.GetKind() {
		case "RoleBinding":
			w.binding = o.DeepCopy()
		case "Role":
			w.role = o.DeepCopy()
		}
	}
	// Long enough for 200 rounds and more.
	tr, err := cp.Admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, w.sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](12 * 3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("token for %s: %w", w.sa, err)
	}
	if _, err := cp.Admin.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: w.service},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{nameLabel: appName, instanceLabel: name, roleKey: "leader"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	for i := range n {
		pod := fmt.Sprintf("%s-%d", name, i)
		ip := fmt.Sprintf("10.244.%d.%d", subnet, i+10)
		created, err := cp.Admin.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: pod, Labels: map[string]string{nameLabel: appName, instanceLabel: name}},
			Spec: corev1.PodSpec{
				ServiceAccountName: w.sa, AutomountServiceAccountToken: ptr.To(false), NodeName: nodeName,
				Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:test",
					Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		if err := cp.MarkRunning(ctx, ns, pod, ip); err != nil {
			return nil, err
		}
		r, err := newReplica(w, pod, ip, filepath.Join(dir, pod))
		if err != nil {
			return nil, err
		}
		r.uid = string(created.UID)
		if err := connect(t, r, tr.Status.Token); err != nil {
			return nil, err
		}
		// Its twin: the same pod's identity and UID, a process,
		// emptyDir and proxy of its own.
		twin, err := newReplica(w, pod+"-twin", ip, filepath.Join(dir, pod+"-twin"))
		if err != nil {
			return nil, err
		}
		twin.identity, twin.uid = r.identity, r.uid
		if err := connect(t, twin, tr.Status.Token); err != nil {
			return nil, err
		}
		w.replicas = append(w.replicas, r)
		wd.twins[r] = twin
	}
	return w, nil
}

func (wd *world) startRecorders() {
	t := wd.t
	ctx, cancel := context.WithCancel(context.Background())
	wd.stopRecorders = cancel
	run := wd.run
	wd.tracker.onOpen = func(e *episode) {
		if e.frozen {
			return
		}
		run.violate(run.current(), inv1, fmt.Sprintf("status files of %v existed at once from %s (%s)", e.pods, e.start.Format("15:04:05.000"), e.workload), e.pods...)
	}
	wd.tracker.onClose = func(e *episode) { run.addOverlap(e) }
	wd.tracker.onRemoved = func(pod string, d time.Duration) { run.addThawRemoval(pod, d) }
	wd.routed.onOpen = func(e *episode, state []string) {
		run.violate(run.current(), inv2, fmt.Sprintf("the Service of %s named %v at %s", e.workload, state, e.start.Format("15:04:05.000")), state...)
	}
	wd.routed.onClose = func(e *episode) { run.addTwoPodTime(e) }
	wd.routed.onSample = func(string, []string) { run.count(func(r *round) { r.twoPodSamples++ }) }
	wd.labelled.onSample = func(string, []string) { run.count(func(r *round) { r.twoLabelSamples++ }) }

	watched := slices.Clone(wd.replicas)
	for _, r := range wd.replicas {
		watched = append(watched, wd.twins[r])
	}
	files, err := newFileRecorder(wd.tracker, watched)
	if err != nil {
		t.Fatal(err)
	}
	files.onPollTwo = func(w *workload, pods []string) {
		run.count(func(r *round) {
			r.pollTwo++
			if r.pollTwo == 1 {
				run.violateLocked(r, inv1, fmt.Sprintf("the poller saw the status files of %v twice in a row", pods), pods...)
			}
		})
	}
	wd.files = files
	wd.recorders.Go(func() { files.run(ctx) })
	api, err := startAPIRecorders(ctx, &wd.recorders, wd.client, wd.ns, wd.workloads, wd.routed, wd.labelled)
	if err != nil {
		t.Fatal(err)
	}
	wd.api = api
	for _, synced := range api.synced {
		select {
		case <-synced:
		case <-time.After(30 * time.Second):
			t.Fatal("the Lease, EndpointSlice and pod recorders did not sync")
		}
	}
	rates := &rateSampler{replicas: wd.replicas, onRate: run.addRate}
	wd.recorders.Go(func() { rates.run(ctx) })
}

// observeRequest sees each request of r as it reaches r's proxy. A sidecar
// thawed after SIGSTOP must remove its status file before anything else it
// does: no write may reach the API while the file is still there.
func (wd *world) observeRequest(r *replica, req testcluster.Request) {
	v, _ := wd.recent.LoadOrStore(r, &requestLog{})
	if n := v.(*requestLog).add(req); n > 0 {
		wd.run.count(func(rd *round) { rd.watchBurst[r] = max(rd.watchBurst[r], n) })
	}
	if req.Method == "GET" || req.Method == "HEAD" || req.Method == "OPTIONS" {
		return
	}
	if wd.tracker.awaitingRemoval(r.pod) && r.hasStatusFile() {
		wd.thawedWrites.Store(thawedWrite{r, req}, true)
	}
}

// thawedWrite is a write that reached r's proxy after SIGCONT while r's
// status file still existed.
type thawedWrite struct {
	r   *replica
	req testcluster.Request
}

// observeAnswer sees each answered request of r. A thawed write must not
// be accepted: a renew the sidecar had begun to send as the SIGSTOP came
// reaches the proxy only after SIGCONT, and is refused (409: conditional on
// a version another replica's take-over replaced) or cut off by its own
// deadline. One the API accepted is a write of a leader whose file still
// stood: a violation.
func (wd *world) observeAnswer(r *replica, req testcluster.Request, status int) {
	if _, ok := wd.thawedWrites.LoadAndDelete(thawedWrite{r, req}); !ok {
		return
	}
	cur := wd.run.current()
	if status >= 200 && status < 300 {
		wd.run.violate(cur, inv1, fmt.Sprintf("%s sent %s %s after SIGCONT while its status file still existed, and the API accepted it (%d)", r.pod, req.Method, req.Path, status), r.pod)
		return
	}
	wd.run.count(func(rd *round) {
		rd.notef("%s: %s %s reached the proxy after SIGCONT while its status file still existed, not accepted (status %d, 0: cut off): sent as the SIGSTOP came", r.pod, req.Method, req.Path, status)
	})
}

func (wd *world) requestsOf(r *replica) string {
	if v, ok := wd.recent.Load(r); ok {
		return v.(*requestLog).String()
	}
	return ""
}

// start runs r's sidecar; an exit the test did not cause is a violation.
func (wd *world) start(r *replica) error {
	_, err := r.start(wd.env, func(p *proc) {
		exitErr, at, expected := p.exit()
		cur := wd.run.current()
		switch {
		case expected == "":
			wd.run.violate(cur, inv4, fmt.Sprintf("%s (run %d) exited by itself at %s: %v", r.pod, p.run, at.Format("15:04:05.000"), exitErr), r.pod)
		case expected == whySIGTERM && exitErr != nil:
			wd.run.violate(cur, inv4, fmt.Sprintf("%s (run %d) exited with %v after SIGTERM, want 0", r.pod, p.run, exitErr), r.pod)
		}
		if bad := crashLines(p.log()); bad != "" {
			wd.run.violate(cur, inv4, fmt.Sprintf("%s (run %d) logged a crash:\n%s", r.pod, p.run, bad), r.pod)
		}
	})
	return err
}

// Why the test ends a sidecar.
const (
	whySIGTERM = "SIGTERM"
	whySIGKILL = "SIGKILL"
)

// crashLines returns the lines of log that show a panic, a fatal runtime
// error or a data race.
func crashLines(log string) string {
	var out []string
	for _, l := range strings.Split(log, "\n") {
		if strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "fatal error:") || strings.Contains(l, "DATA RACE") ||
			strings.HasPrefix(l, "goroutine ") && strings.Contains(l, "[running]") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// stop ends every sidecar with SIGTERM (thawing any frozen one first) and
// then the recorders.
func (wd *world) stop() {
	var wg sync.WaitGroup
	all := slices.Clone(wd.replicas)
	for _, r := range wd.replicas {
		all = append(all, wd.twins[r])
	}
	all = append(all, wd.gatekept.replicas...)
	for _, r := range all {
		wg.Go(func() {
			if p := r.current(); p != nil && !p.exited() {
				_ = p.signal(syscall.SIGCONT)
				if err := r.stop(syscall.SIGTERM, whySIGTERM, 15*time.Second); err != nil {
					wd.t.Errorf("stop %s: %v", r.pod, err)
				}
			}
		})
	}
	wg.Wait()
	wd.stopRecorders()
	wd.recorders.Wait()
	for _, err := range wd.files.errors() {
		wd.t.Errorf("status file recorder: %v", err)
	}
	if wd.t.Failed() {
		for _, r := range all {
			if p := r.current(); p != nil {
				wd.t.Logf("--- log of %s (run %d), last lines:\n%s", r.pod, p.run, p.logTail(40))
			}
		}
	}
}

// state is what one look at a workload saw.
type state struct {
	files    []string // running sidecars with a status file
	holder   string
	labelled []string
	routed   []string
	err      error
}

func (s state) leader() (string, bool) {
	if s.err != nil || len(s.files) != 1 {
		return "", false
	}
	p := s.files[0]
	return p, s.holder == p && slices.Equal(s.labelled, []string{p}) && slices.Equal(s.routed, []string{p})
}

func (s state) String() string {
	out := fmt.Sprintf("status files %v, Lease holder %q, role=leader on %v, Service names %v (err %v)", s.files, s.holder, s.labelled, s.routed, s.err)
	if len(s.files) == 1 && s.holder == s.files[0] && slices.Equal(s.labelled, s.files) {
		out += " (the sidecars are done: the endpointslice controller has not followed)"
	}
	return out
}

// look reads a workload's state: status files (each seen twice, as the
// e2e suite counts them), the Lease, the labels and the Service's slices.
func (wd *world) look(ctx context.Context, w *workload) state {
	var s state
	first := map[*replica]bool{}
	for _, r := range w.replicas {
		first[r] = r.hasStatusFile()
	}
	for _, r := range w.replicas {
		if first[r] && r.hasStatusFile() && wd.fileOfCurrentRun(r) {
			s.files = append(s.files, r.pod)
		}
	}
	l, err := wd.client.CoordinationV1().Leases(wd.ns).Get(ctx, w.lease, metav1.GetOptions{})
	if err == nil && l.Spec.HolderIdentity != nil {
		s.holder = *l.Spec.HolderIdentity
	} else if err != nil && !strings.Contains(err.Error(), "not found") {
		s.err = err
		return s
	}
	pods, err := wd.client.CoreV1().Pods(wd.ns).List(ctx, metav1.ListOptions{LabelSelector: instanceLabel + "=" + w.name + "," + roleKey + "=leader"})
	if err != nil {
		s.err = err
		return s
	}
	for _, p := range pods.Items {
		s.labelled = append(s.labelled, p.Name)
	}
	slices.Sort(s.labelled)
	s.routed, s.err = wd.endpoints(ctx, w.service)
	return s
}

// endpoints are the pods the Service's slices name as ready.
func (wd *world) endpoints(ctx context.Context, service string) ([]string, error) {
	list, err := wd.client.DiscoveryV1().EndpointSlices(wd.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + service})
	if err != nil {
		return nil, fmt.Errorf("list endpointslices of %s: %w", service, err)
	}
	var out []string
	for i := range list.Items {
		out = append(out, readyPods(&list.Items[i])...)
	}
	return slices.Compact(slices.Sorted(slices.Values(out))), nil
}

// fileOfCurrentRun reports whether r's status file, as the recorder knows
// it, was written by r's running sidecar: a killed run's file stays until the
// next run removes it, and says nothing about the next run.
func (wd *world) fileOfCurrentRun(r *replica) bool {
	p := r.current()
	since, ok := wd.tracker.since(r.w.name, r.pod)
	return ok && p != nil && !p.exited() && since.After(p.started)
}

// recorded is a workload's state as the recorders know it, without a
// request: cheap enough to poll every few milliseconds.
func (wd *world) recorded(w *workload) state {
	var s state
	for _, r := range w.replicas {
		if r.hasStatusFile() && wd.fileOfCurrentRun(r) {
			s.files = append(s.files, r.pod)
		}
	}
	s.holder = wd.api.leases.holder(w.lease)
	s.labelled = wd.labelled.get(w.name)
	s.routed = wd.routed.get(w.name)
	return s
}

// waitSettled waits until every workload has one leader, which holds the
// Lease, is labelled and is routed; limit counts from since. It returns how
// long after since that was, the leaders, or the last states seen.
func (wd *world) waitSettled(ctx context.Context, since time.Time, limit time.Duration) (time.Duration, map[*workload]*replica, string) {
	var last []string
	var took time.Duration
	leaders := map[*workload]*replica{}
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, time.Until(since.Add(limit)), true, func(ctx context.Context) (bool, error) {
		last = last[:0]
		at := time.Since(since)
		// The recorders say when; one look at the API confirms it.
		for _, w := range wd.workloads {
			if s := wd.recorded(w); !func() bool { _, ok := s.leader(); return ok }() {
				last = append(last, w.name+": recorded "+s.String())
			}
		}
		if len(last) > 0 {
			return false, nil
		}
		for _, w := range wd.workloads {
			s := wd.look(ctx, w)
			pod, ok := s.leader()
			if !ok {
				last = append(last, w.name+": "+s.String())
				continue
			}
			for _, r := range w.replicas {
				if r.pod == pod {
					leaders[w] = r
				}
			}
		}
		took = at
		return len(last) == 0, nil
	})
	if err != nil {
		return took, nil, strings.Join(last, "; ")
	}
	return took, leaders, ""
}

// canary is a pod and a Service of no workload: flipping the pod's label
// and seeing the Service follow shows that the endpointslice controller
// works again after a restart of the control plane.
const canary = "canary"

func (wd *world) createCanary(ctx context.Context) error {
	if _, err := wd.client.CoreV1().Services(wd.ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: canary},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": canary, canary: "on"},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("http")}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the canary Service: %w", err)
	}
	if _, err := wd.client.CoreV1().Pods(wd.ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: canary, Labels: map[string]string{"app": canary, canary: "off"}},
		Spec: corev1.PodSpec{
			ServiceAccountName:           wd.workloads[0].sa, // there is no "default": no serviceaccount controller
			AutomountServiceAccountToken: ptr.To(false), NodeName: nodeName,
			Containers: []corev1.Container{{Name: "app", Image: "registry.invalid/app:test",
				Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}},
		},
	}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create the canary pod: %w", err)
	}
	return cp.MarkRunning(ctx, wd.ns, canary, "10.244.9.9")
}

// controlPlaneWorks flips the canary's label and waits until its Service
// follows, and returns when it did.
func (wd *world) controlPlaneWorks(ctx context.Context, timeout time.Duration) (time.Time, error) {
	var want []string
	var at time.Time
	err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		if want == nil {
			pod, err := wd.client.CoreV1().Pods(wd.ns).Get(ctx, canary, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			flip := map[string]string{"on": "off", "off": "on"}[pod.Labels[canary]]
			patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, canary, flip)
			if _, err := wd.client.CoreV1().Pods(wd.ns).Patch(ctx, canary, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
				return false, nil
			}
			want = []string{}
			if flip == "on" {
				want = []string{canary}
			}
		}
		eps, err := wd.endpoints(ctx, canary)
		if err != nil || !slices.Equal(eps, want) {
			return false, nil
		}
		at = time.Now()
		return true, nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("the endpointslice controller does not route the canary within %s: %w", timeout, err)
	}
	return at, nil
}

// restoreAll undoes whatever a fault left: every proxy passes, every
// emptyDir is writable, every RoleBinding exists, no sidecar is stopped, and
// every sidecar runs (an ended one is restarted, as the kubelet would).
func (wd *world) restoreAll(ctx context.Context) error {
	for _, r := range wd.replicas {
		r.proxy.SetMode(testcluster.Pass)
		r.proxy.SetDelay(0, testcluster.AllRequests)
		if err := os.Chmod(r.emptyDir, 0o755); err != nil {
			return err
		}
		if p := r.current(); p != nil && !p.exited() {
			_ = p.signal(syscall.SIGCONT)
		}
	}
	for _, w := range wd.workloads {
		if err := cp.ApplyObjects(ctx, wd.ns, []*unstructured.Unstructured{w.role.DeepCopy(), w.binding.DeepCopy()}); err != nil {
			return err
		}
	}
	for _, r := range wd.replicas {
		if p := r.current(); p != nil && p.exited() {
			if err := wd.start(r); err != nil {
				return err
			}
		}
	}
	return nil
}

func (wd *world) podNames() []string {
	var out []string
	for _, r := range wd.replicas {
		out = append(out, r.pod)
	}
	return out
}

// excerpt is the end of the logs of the named pods' sidecars.
func (wd *world) excerpt(pods []string, lines int) string {
	var b strings.Builder
	for _, r := range wd.replicas {
		if !slices.Contains(pods, r.pod) {
			continue
		}
		if p := r.current(); p != nil {
			if p.run > 1 {
				// The run before, in case the fault ended it.
				prev := &proc{logPath: filepath.Join(r.dir, fmt.Sprintf("sidecar-%d.log", p.run-1))}
				fmt.Fprintf(&b, "--- %s (run %d), last %d log lines:\n%s\n", r.pod, p.run-1, lines/2, prev.logTail(lines/2))
			}
			fmt.Fprintf(&b, "--- %s (run %d), last %d log lines:\n%s\n", r.pod, p.run, lines, p.logTail(lines))
			if reqs := wd.requestsOf(r); reqs != "" {
				fmt.Fprintf(&b, "--- %s, last requests through its proxy:\n%s", r.pod, reqs)
			}
		}
	}
	return b.String()
}
