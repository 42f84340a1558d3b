// Package e2e runs the leader-elector binary as the sidecars of pods on a real
// local control plane, with exactly the RBAC of deploy/.
package e2e

import (
	"context"
	"fmt"
	"k8s.io/apimachinery/pkg/util/wait"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

var (
	cp     *testcluster.ControlPlane
	binary string
)

func TestMain(m *testing.M) {
	dir, err := testcluster.TempDir("e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary, err = testcluster.BuildSidecar(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := testcluster.Main(m, &cp)
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

const (
	leaseName = "myapp-lock" // the Lease deploy/rbac.yaml grants
	appLabel  = "demo"
)

// Short timings keep the tests quick; the rules between them are the same.
const (
	leaseDuration = 6 * time.Second
	renewDeadline = 4 * time.Second
	retryPeriod   = 1 * time.Second
)

var timingEnv = []string{
	"LEASE_DURATION=" + leaseDuration.String(),
	"RENEW_DEADLINE=" + renewDeadline.String(),
	"RETRY_PERIOD=" + retryPeriod.String(),
}

// fleet is a namespace with the RBAC and admission policy of deploy/, pods
// and their sidecars.
type fleet struct {
	t   *testing.T
	ns  string
	dir string
	// kubeconfig holds a token of the ServiceAccount bound to no pod: the
	// ServiceAccount outside any pod. A sidecar started with it gets a token
	// of the same ServiceAccount bound to its pod instead, as the kubelet
	// mounts it, so the admission policy sees its own pod.
	kubeconfig string

	// ips are the pods' own loopback IPs, for pods that have one (see
	// testcluster.SidecarOptions.IP); their sidecars share port.
	ips  map[string]string
	port int

	mu       sync.Mutex // samplers read sidecars while tests add to it
	sidecars []*testcluster.Sidecar
}

// all returns the sidecars started so far.
func (f *fleet) all() []*testcluster.Sidecar {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.sidecars)
}

// newFleet prepares a namespace; add replicas with add.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	// The policy is cluster-wide; applying it again is no change. Every test
	// runs under it, as a cluster with deploy/ applied does.
	deploy := filepath.Join(testcluster.RepoRoot(), "deploy")
	if err := cp.ApplyManifests(ctx, ns, filepath.Join(deploy, "rbac", "rbac.yaml"), filepath.Join(deploy, "admission-policy", "admission-policy.yaml")); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, ns, testcluster.ServiceAccount, dir)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, ns: ns, dir: dir, kubeconfig: kubeconfig}
	t.Cleanup(f.stop)
	return f
}

// add creates n pods and starts their sidecars with env.
func (f *fleet) add(n int, env ...string) {
	f.t.Helper()
	for range n {
		name := "replica-" + strconv.Itoa(len(f.all()))
		f.addPod(name, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		f.start(name, f.kubeconfig, env...)
	}
}

func (f *fleet) addPod(name string, opts testcluster.PodOptions) {
	f.t.Helper()
	if _, err := cp.CreatePod(f.t.Context(), f.ns, name, opts); err != nil {
		f.t.Fatal(err)
	}
}

// start starts the sidecar of pod with kubeconfig; f.kubeconfig stands for
// the pod's own ServiceAccount token, bound to the pod.
func (f *fleet) start(pod, kubeconfig string, env ...string) *testcluster.Sidecar {
	f.t.Helper()
	dir := filepath.Join(f.dir, pod)
	if kubeconfig == f.kubeconfig {
		kubeconfig = f.podKubeconfig(pod)
	}
	opts := testcluster.SidecarOptions{
		Binary: binary, Namespace: f.ns, Pod: pod, Lease: leaseName,
		Kubeconfig: kubeconfig, Env: append(slices.Clone(timingEnv), env...), Dir: dir,
	}
	if ip := f.ips[pod]; ip != "" {
		if f.port == 0 {
			port, err := testcluster.FreePort()
			if err != nil {
				f.t.Fatal(err)
			}
			f.port = port
		}
		opts.IP, opts.HealthPort = ip, f.port
	}
	s, err := testcluster.StartSidecar(opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.sidecars = append(f.sidecars, s)
	f.mu.Unlock()
	return s
}

// podKubeconfig writes a kubeconfig whose token is bound to pod, which must
// exist.
func (f *fleet) podKubeconfig(pod string) string {
	f.t.Helper()
	path, err := cp.PodKubeconfig(f.t.Context(), f.ns, testcluster.ServiceAccount, pod, f.dir)
	if err != nil {
		f.t.Fatal(err)
	}
	return path
}

// stop terminates every sidecar and, if the test failed, shows their logs.
func (f *fleet) stop() {
	var wg sync.WaitGroup
	for _, s := range f.all() {
		wg.Go(func() {
			if err := s.Terminate(); err != nil {
				f.t.Errorf("terminate %s: %v", s.Opts.Pod, err)
			}
		})
	}
	wg.Wait()
	if f.t.Failed() {
		for _, s := range f.all() {
			f.t.Logf("log of %s:\n%s", s.Opts.Pod, s.LogTail(60))
		}
	}
}

func (f *fleet) byPod(pod string) *testcluster.Sidecar {
	for _, s := range f.all() {
		if s.Opts.Pod == pod {
			return s
		}
	}
	f.t.Fatalf("no sidecar for pod %s", pod)
	return nil
}

// fileHolders returns the pods whose sidecar runs and whose status file
// exists. Each file is looked at twice, in two passes; it counts only if both
// saw it. Since a file exists over one interval, two files counted together
// existed at one instant. A killed sidecar stands for a dead pod: its file
// is not counted.
func (f *fleet) fileHolders() []string {
	sidecars := f.all()
	first := make([]bool, len(sidecars))
	for i, s := range sidecars {
		first[i] = !s.Exited() && s.HasStatusFile()
	}
	var out []string
	for i, s := range sidecars {
		if first[i] && !s.Exited() && s.HasStatusFile() {
			out = append(out, s.Opts.Pod)
		}
	}
	return out
}

// labelled returns the pods labelled role=leader, from one consistent list.
func (f *fleet) labelled(ctx context.Context) ([]string, error) {
	pods, err := cp.Admin.CoreV1().Pods(f.ns).List(ctx, metav1.ListOptions{LabelSelector: "role=leader"})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, p := range pods.Items {
		out = append(out, p.Name)
	}
	return out, nil
}

// holder returns the Lease's holderIdentity.
func (f *fleet) holder(ctx context.Context) string {
	l, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(ctx, leaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitLeader waits until exactly one pod has the status file, the Lease names
// it, and, with labels, exactly it is labelled leader; it returns that pod.
func (f *fleet) waitLeader(timeout time.Duration, labels bool) string {
	f.t.Helper()
	var last string
	ok := eventually(timeout, func() bool {
		files := f.fileHolders()
		holder := f.holder(f.t.Context())
		last = fmt.Sprintf("status files %v, lease holder %q", files, holder)
		if len(files) != 1 || holder != files[0] {
			return false
		}
		if labels {
			l, err := f.labelled(f.t.Context())
			last += fmt.Sprintf(", role=leader on %v (%v)", l, err)
			if len(l) != 1 || l[0] != files[0] {
				return false
			}
		}
		return true
	})
	if !ok {
		f.t.Fatalf("no single leader within %s: %s", timeout, last)
	}
	return f.fileHolders()[0]
}

// eventually polls cond every 10ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	return wait.PollUntilContextTimeout(context.Background(), 10*time.Millisecond, timeout, true,
		func(context.Context) (bool, error) { return cond(), nil }) == nil
}

// sampler checks continuously that no two leaders are ever seen.
type sampler struct {
	stop    context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	samples int
	bad     []string
	badAt   []time.Time
	// window, when set by tolerateOne, is the one overlap the case allows.
	window *overlapWindow
}

// overlapWindow allows two leaders in one interval that starts at or after
// after and lasts at most max.
type overlapWindow struct {
	after time.Time
	max   time.Duration
}

// tolerateOne allows the samples with two leaders to form one interval, at
// or after after and at most max long: for a case whose documented
// behaviour is a bounded overlap, such as two processes sharing one
// identity and pod UID. Every other overlap still fails the test.
func (s *sampler) tolerateOne(after time.Time, max time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.window = &overlapWindow{after: after, max: max}
}

// tolerated reports whether the two-leader samples fit the window; the
// caller holds s.mu.
func (s *sampler) tolerated() (bool, string) {
	if s.window == nil || len(s.badAt) == 0 {
		return len(s.badAt) == 0, ""
	}
	first, last := s.badAt[0], s.badAt[len(s.badAt)-1]
	ok := !first.Before(s.window.after) && last.Sub(first) <= s.window.max
	return ok, fmt.Sprintf("%d samples with two leaders from %s to %s (%s; allowed: one interval of at most %s after %s)",
		len(s.badAt), first.Format("15:04:05.000"), last.Format("15:04:05.000"), last.Sub(first).Round(time.Millisecond),
		s.window.max, s.window.after.Format("15:04:05.000"))
}

// sampleLeaders runs probe every few milliseconds until the test ends; each
// probe returns the leaders it sees in one consistent view.
func sampleLeaders(t *testing.T, what string, probe func(context.Context) ([]string, error)) *sampler {
	ctx, stop := context.WithCancel(context.Background())
	s := &sampler{stop: stop, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			leaders, err := probe(ctx)
			s.mu.Lock()
			if err == nil {
				s.samples++
				if now := time.Now(); len(leaders) > 1 {
					s.badAt = append(s.badAt, now)
					if len(s.bad) < 20 {
						s.bad = append(s.bad, fmt.Sprintf("%s at %s: %v", what, now.Format("15:04:05.000"), leaders))
					}
				}
			}
			s.mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		stop()
		<-s.done
		s.mu.Lock()
		defer s.mu.Unlock()
		ok, window := s.tolerated()
		for _, b := range s.bad {
			if ok {
				t.Logf("two leaders, within the allowed window: %s", b)
			} else {
				t.Errorf("two leaders: %s", b)
			}
		}
		if window != "" && !ok {
			t.Errorf("%s: %s", what, window)
		} else if window != "" {
			t.Logf("%s: %s", what, window)
		}
		if s.samples < 10 {
			t.Errorf("%s: only %d samples were taken", what, s.samples)
		}
		t.Logf("%s: %d samples, none with two leaders: %v", what, s.samples, len(s.badAt) == 0)
	})
	return s
}
