// Package pods runs deploy/ as real pods: a real kubelet and containerd
// (testcluster.StartNode) start the product image as a native sidecar beside
// an app container that runs the README's shell check, with the RBAC and the
// admission policy of deploy/, the in-cluster configuration from a projected
// ServiceAccount token, and the kubelet's probes, restarts and stop order.
package pods

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leader-elector/leader-elector/internal/inputs/control"
	"github.com/leader-elector/leader-elector/internal/leasestore"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

var (
	cp   *testcluster.ControlPlane
	node *testcluster.Node
)

func TestMain(m *testing.M) {
	if os.Getenv(holdEnv) != "" {
		holdForKill()
		return
	}
	os.Exit(testcluster.MainWithNode(m, &cp, &node))
}

const (
	lease     = "myapp-lock"
	sidecar   = "leader-elector"
	app       = "app"
	statusRel = "leader_status" // on the emptyDir "tmp", mounted at /tmp
)

// workload is deploy/example.yaml's Deployment running in one namespace.
type workload struct {
	t  *testing.T
	ns string
	// leaseName is the Lease's name, if not deploy/example.yaml's.
	leaseName string
}

func (w *workload) ctx() context.Context { return w.t.Context() }

// on is the workload as seen from subtest t: its failures are t's.
func (w *workload) on(t *testing.T) *workload {
	return &workload{t: t, ns: w.ns, leaseName: w.leaseName}
}

// pods returns the workload's pods; with live, only those running and not
// being deleted.
func (w *workload) pods(live bool) []corev1.Pod {
	list, err := cp.Admin.CoreV1().Pods(w.ns).List(w.ctx(), metav1.ListOptions{LabelSelector: "app=myapp"})
	if err != nil {
		w.t.Fatalf("list pods: %v", err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if !live || (p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning) {
			out = append(out, p)
		}
	}
	return out
}

func (w *workload) pod(name string) *corev1.Pod {
	p, err := cp.Admin.CoreV1().Pods(w.ns).Get(w.ctx(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}

func (w *workload) lease() *coordinationv1.Lease {
	name := cmp.Or(w.leaseName, lease)
	l, err := cp.Admin.CoordinationV1().Leases(w.ns).Get(w.ctx(), name, metav1.GetOptions{})
	if err != nil {
		w.t.Fatalf("get Lease %s: %v", name, err)
	}
	return l
}

var holder = testcluster.Holder

func status(p *corev1.Pod, name string) *corev1.ContainerStatus {
	return testcluster.ContainerStatus(p, name)
}

func appSays(p *corev1.Pod) (bool, string, error) {
	return testcluster.AppSeesStatusFile(context.Background(), p)
}

func (w *workload) waitReady(n int, timeout time.Duration) []corev1.Pod {
	w.t.Helper()
	pods, err := cp.WaitExamplePods(w.ctx(), w.ns, n, timeout)
	if err != nil {
		w.t.Fatalf("%v; the node's kubelet log ends:\n%s", err, node.Process("kubelet").LogTail(20))
	}
	return pods
}

func killContainer(t *testing.T, containerID string) time.Time {
	t.Helper()
	at, err := node.KillContainer(t.Context(), containerID)
	if err != nil {
		t.Fatal(err)
	}
	return at
}

// sidecarStarted waits until the pod's sidecar logs a start since t0.
func (w *workload) sidecarStarted(pod string, t0 time.Time) time.Time {
	w.t.Helper()
	at, err := cp.SidecarStarted(w.ctx(), w.ns, pod, t0, 30*time.Second)
	if err != nil {
		w.t.Fatal(err)
	}
	return at
}

// restarted waits until the kubelet reports a restart of the pod's sidecar
// since before: the count is published after the restart's effects show.
func (w *workload) restarted(pod string, before *corev1.ContainerStatus) *corev1.ContainerStatus {
	w.t.Helper()
	after, err := cp.WaitRestarted(w.ctx(), w.ns, pod, sidecar, before, 60*time.Second)
	if err != nil {
		w.t.Fatalf("%v; its log ends:\n%s", err, w.sidecarLog(pod))
	}
	return after
}

func (w *workload) waitGone(name string, timeout time.Duration) *corev1.Pod {
	w.t.Helper()
	last, err := cp.WaitPodGone(w.ctx(), w.ns, name, timeout)
	if err != nil {
		w.t.Fatal(err)
	}
	return last
}

// statusFile is the pod's status file on its emptyDir, seen from the node.
func statusFile(p *corev1.Pod) string {
	return filepath.Join(node.EmptyDirPath(p.UID, testcluster.StatusVolume(p)), statusRel)
}

// appLogSays waits for the app container's shell check to print want
// ("leading" or "following") as its last line, through the kubelet's logs.
func (w *workload) appLogSays(p *corev1.Pod, want string) {
	w.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(w.ctx(), 500*time.Millisecond, 15*time.Second, true, func(ctx context.Context) (bool, error) {
		tail := int64(1)
		b, err := cp.Admin.CoreV1().Pods(w.ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: app, TailLines: &tail}).DoRaw(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = strings.TrimSpace(string(b))
		return last == want, nil
	})
	if err != nil {
		w.t.Errorf("app of %s: its shell check printed %q, want %q", p.Name, last, want)
	}
}

// leaderNow waits until one live pod holds the Lease, its app sees the
// status file with its name, and no other pod's app sees one.
func (w *workload) leaderNow(timeout time.Duration) *corev1.Pod {
	w.t.Helper()
	var leader *corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(w.ctx(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		h := holder(w.lease())
		leader = nil
		for _, p := range w.pods(true) {
			leading, content, err := appSays(&p)
			if err != nil {
				last = err.Error()
				return false, nil
			}
			if leading != (p.Name == h) {
				last = fmt.Sprintf("holder %q; the app of %s sees a file: %v", h, p.Name, leading)
				return false, nil
			}
			if leading {
				if content != p.Name+"\n" {
					last = fmt.Sprintf("the app of %s reads %q", p.Name, content)
					return false, nil
				}
				leader = &p
			}
		}
		if leader == nil {
			last = fmt.Sprintf("holder %q is no live pod", h)
		}
		return leader != nil, nil
	})
	if err != nil {
		w.t.Fatalf("no single leader within %s: %s", timeout, last)
	}
	return leader
}

// sampler stats every pod's status file on the node every few milliseconds,
// terminating pods' too (their apps still run), and records every sweep
// that finds two.
type sampler struct {
	stop    context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	ignore  map[string]bool
	samples int
	bad     []string
}

func (w *workload) sample() *sampler {
	ctx, stop := context.WithCancel(context.Background())
	s := &sampler{stop: stop, done: make(chan struct{}), ignore: map[string]bool{}}
	files := node.StatusFiles(ctx, w.ns)
	go func() {
		defer close(s.done)
		for ctx.Err() == nil {
			s.mu.Lock()
			var seen []string
			for name, f := range files() {
				if _, err := os.Stat(f); err == nil && !s.ignore[name] {
					seen = append(seen, name)
				}
			}
			s.samples++
			if len(seen) > 1 && len(s.bad) < 20 {
				s.bad = append(s.bad, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), seen))
			}
			s.mu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	}()
	w.t.Cleanup(func() {
		stop()
		<-s.done
		for _, b := range s.bad {
			w.t.Errorf("two pods' apps saw a status file at once: %s", b)
		}
		if s.samples < 100 {
			w.t.Errorf("only %d samples of the status files were taken", s.samples)
		}
		w.t.Logf("status files sampled %d times on the node, never two at once: %v", s.samples, len(s.bad) == 0)
	})
	return s
}

// sampleAPI lists, every 20 ms until the test ends, the pods labelled
// role=leader and the ready endpoints of the Service myapp-leader, and
// fails the test for every sample that finds two of either: never two pods
// behind the Service, never two labelled leader.
func (w *workload) sampleAPI() {
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	var samples int
	var bad []string
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			labelled, err := cp.Admin.CoreV1().Pods(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "role=leader"})
			if err == nil {
				eps, err := cp.ServiceEndpoints(ctx, w.ns, "myapp-leader")
				if err == nil {
					samples++
					if n := len(labelled.Items); n > 1 && len(bad) < 20 {
						var names []string
						for _, p := range labelled.Items {
							names = append(names, p.Name)
						}
						bad = append(bad, fmt.Sprintf("%s: %d pods labelled role=leader: %v", time.Now().Format("15:04:05.000"), n, names))
					}
					if len(eps) > 1 && len(bad) < 20 {
						bad = append(bad, fmt.Sprintf("%s: the Service routes to %v", time.Now().Format("15:04:05.000"), eps))
					}
				}
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	w.t.Cleanup(func() {
		stop()
		<-done
		for _, b := range bad {
			w.t.Errorf("two leaders in the API: %s", b)
		}
		if samples < 20 {
			w.t.Errorf("only %d samples of the labels and the Service were taken", samples)
		}
		w.t.Logf("role=leader labels and the Service's endpoints sampled %d times, never two at once: %v", samples, len(bad) == 0)
	})
}

func (s *sampler) setIgnore(pod string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ignore[pod] = on
}

// TestRealPods runs deploy/example.yaml, rendered by kustomize with only the
// test's changes (PodOverlay), as three real pods, and checks what a user
// relies on in turn: one leader whose app sees the file, the Service, the
// probes, a sidecar killed and restarted by the kubelet, a stale file, and a
// deleted leader pod; never two pods whose apps see a status file.
func TestRealPods(t *testing.T) {
	ns := testcluster.Namespace(t, cp)
	w := &workload{t: t, ns: ns}
	objs, err := testcluster.KustomizeDeploy(node.PodOverlay(ns))
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := cp.ApplyObjects(t.Context(), ns, objs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.DeleteExample(context.Background(), ns, 90*time.Second); err != nil {
			t.Error(err)
		}
	})
	w.waitReady(3, 3*time.Minute)
	t.Logf("3 pods ready %s after kubectl apply", time.Since(start).Round(time.Millisecond))
	s := w.sample()
	w.sampleAPI()

	t.Run("the release image is pulled from a registry by tag", func(t *testing.T) {
		w := w.on(t)
		// A pulled image's ID is its repository digest: the index `make
		// image` builds, as the registry serves it (an imported one would
		// be its config's digest).
		digest, err := node.Images.Sidecar.Index.Digest()
		if err != nil {
			t.Fatal(err)
		}
		ref := node.Images.Sidecar.Ref
		repo := ref[:strings.LastIndexByte(ref, ':')]
		for _, p := range w.pods(true) {
			if got := p.Spec.InitContainers[0].ImagePullPolicy; got != corev1.PullIfNotPresent {
				t.Errorf("%s: the sidecar's pull policy is %s, want the default for a tag, IfNotPresent", p.Name, got)
			}
			st := p.Status.InitContainerStatuses
			if len(st) == 0 || st[0].Image != ref || st[0].ImageID != repo+"@"+digest.String() {
				t.Errorf("%s: the sidecar runs %+v, want image %s pulled as %s@%s", p.Name, st, ref, repo, digest)
			}
		}
	})

	t.Run("one leader whose app sees the file", func(t *testing.T) {
		w := w.on(t)
		leader := w.leaderNow(30 * time.Second)
		for _, p := range w.pods(true) {
			want := "following"
			if p.Name == leader.Name {
				want = "leading"
			}
			w.appLogSays(&p, want)
		}
		if err := cp.WaitRoles(t.Context(), ns, testcluster.ExampleApp, leader.Name, 15*time.Second); err != nil {
			t.Error(err)
		}
	})

	t.Run("the Service routes to the leader", func(t *testing.T) {
		w := w.on(t)
		leader := w.leaderNow(30 * time.Second)
		w.serviceRoutesTo(leader)
	})

	t.Run("probes answer through the kubelet", func(t *testing.T) {
		w := w.on(t)
		for _, p := range w.pods(true) {
			sc := status(&p, sidecar)
			if sc == nil || sc.Started == nil || !*sc.Started || !sc.Ready {
				t.Errorf("pod %s: the sidecar's startup and readiness probes have not passed: %+v", p.Name, sc)
			}
			if sc != nil && sc.RestartCount != 0 {
				t.Errorf("pod %s: the sidecar restarted %d times (liveness?)", p.Name, sc.RestartCount)
			}
		}
		// The kubelet probes /livez every 10s and /readyz every 5s, and
		// counts each result in its own metrics.
		leader := w.leaderNow(30 * time.Second)
		probed := time.Now()
		w.probedByKubelet(leader)
		t.Logf("the kubelet's metrics counted successful startup, liveness and readiness probes within %s", time.Since(probed).Round(time.Millisecond))
	})

	t.Run("the app has none of the sidecar's powers", func(t *testing.T) {
		w := w.on(t)
		p := w.leaderNow(30 * time.Second)
		const token = "var/run/secrets/kubernetes.io/serviceaccount/token"
		const socketDir = "run/leader-elector"
		look := func(container string) (uid string, hasToken, hasSocketDir bool) {
			st := status(p, container)
			if st == nil {
				t.Fatalf("pod %s has no container %s", p.Name, container)
			}
			pids, err := node.ContainerPIDs(st.ContainerID)
			if err != nil || len(pids) == 0 {
				t.Fatalf("processes of %s/%s: %v %v", p.Name, container, pids, err)
			}
			root := fmt.Sprintf("/proc/%d/root/", pids[0])
			b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pids[0]))
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(b), "\n") {
				if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
					uid = f[1]
				}
			}
			_, terr := os.Stat(root + token)
			_, serr := os.Stat(root + socketDir)
			return uid, terr == nil, serr == nil
		}
		scUID, scToken, scDir := look(sidecar)
		appUID, appToken, appDir := look(app)
		if !scToken || !scDir {
			t.Errorf("the sidecar of %s: token mounted %v, socket directory %v; want both", p.Name, scToken, scDir)
		}
		if appToken || appDir || appUID == scUID {
			t.Errorf("the app of %s: token mounted %v, socket directory %v, uid %s (the sidecar's %s); want neither, and a user of its own",
				p.Name, appToken, appDir, appUID, scUID)
		}
	})

	t.Run("resign --to hands the Lease to the named pod by a take-over", func(t *testing.T) {
		w := w.on(t)
		leader := w.leaderNow(30 * time.Second)
		// A peer that is not the standby: the leader finds it by its pod's
		// IP, not by the standby's offer.
		standby := w.lease().Annotations[leasestore.AnnotationStandby]
		var to string
		for _, p := range w.pods(true) {
			if p.Name != leader.Name && p.Name != standby {
				to = p.Name
			}
		}
		if to == "" {
			t.Fatalf("premise: no pod other than the leader %s and the standby %q", leader.Name, standby)
		}
		// `kubectl exec LEADER -c leader-elector -- leader-elector resign
		// --to PEER` talks to the sidecar's control socket; the node's root
		// reaches the same socket through the container's root.
		st := status(leader, sidecar)
		pids, err := node.ContainerPIDs(st.ContainerID)
		if err != nil || len(pids) == 0 {
			t.Fatalf("processes of %s/%s: %v %v", leader.Name, sidecar, pids, err)
		}
		socket := fmt.Sprintf("/proc/%d/root/run/leader-elector/leader-elector.sock", pids[0])
		start := time.Now()
		reply, err := control.Resign(t.Context(), socket, to)
		if err != nil || !reply.OK || reply.Leader != to {
			t.Fatalf("resign --to %s on %s: %+v, %v; want done, handed to %s", to, leader.Name, reply, err, to)
		}
		took := time.Since(start)
		next := w.leaderNow(30 * time.Second)
		if next.Name != to {
			t.Fatalf("leader after resign --to %s = %s", to, next.Name)
		}
		l := w.lease()
		if l.Annotations[leasestore.AnnotationHolderUID] != string(next.UID) {
			t.Errorf("holder uid after the take-over = %q, want %s's %q", l.Annotations[leasestore.AnnotationHolderUID], to, next.UID)
		}
		if log := w.sidecarLog(leader.Name); !strings.Contains(log, `msg="handed the lease over"`) || strings.Contains(log, `msg="released lease"`) {
			t.Errorf("the old leader's log does not show a take-over without a release:\n%s", log)
		}
		t.Logf("resign --to %s on %s (the standby was %q): answered after %s, by a take-over", to, leader.Name, standby, took.Round(time.Millisecond))
	})

	t.Run("a killed sidecar is restarted by the kubelet and resumes", func(t *testing.T) {
		w := w.on(t)
		leader := w.leaderNow(30 * time.Second)
		before := status(leader, sidecar)
		// The Service's view through the restart: when the EndpointSlice
		// dropped the leader's pod (the kubelet marks it unready when its
		// sidecar dies) and when it had it again.
		gap := make(chan [2]time.Time, 1)
		go func() {
			var lost time.Time
			for t.Context().Err() == nil {
				eps, err := cp.ServiceEndpoints(context.Background(), ns, "myapp-leader")
				in := err == nil && len(eps) == 1 && eps[0] == leader.Name
				if err == nil && !in && lost.IsZero() {
					lost = time.Now()
				}
				if in && !lost.IsZero() {
					gap <- [2]time.Time{lost, time.Now()}
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		killed := killContainer(t, before.ContainerID)
		next, renewed := w.nextRenewAfter(killed, 60*time.Second)
		after := w.restarted(leader.Name, before)
		started := w.sidecarStarted(leader.Name, killed)
		t.Logf("SIGKILL of the leader's sidecar to the next leader's first write: %s; the kubelet restarted the sidecar %s after the kill, which led %s after its start (leader %s, then %s; %d to %d restarts)",
			renewed.Sub(killed).Round(time.Millisecond), started.Sub(killed).Round(time.Millisecond), renewed.Sub(started).Round(time.Millisecond),
			leader.Name, next, before.RestartCount, after.RestartCount)
		if after.RestartCount != before.RestartCount+1 {
			t.Errorf("the kubelet restarted the sidecar %d times, want once", after.RestartCount-before.RestartCount)
		}
		if next != leader.Name {
			t.Errorf("after a sidecar restart the leadership moved from %s to %s; with POD_UID the pod resumes its term", leader.Name, next)
		}
		w.leaderNow(30 * time.Second)
		w.serviceRoutesTo(w.pod(next))
		select {
		case g := <-gap:
			t.Logf("the Service named no pod for %s, from %s after the kill (the kubelet saw the sidecar die and the pod unready) until its readiness probe passed again",
				g[1].Sub(g[0]).Round(time.Millisecond), g[0].Sub(killed).Round(time.Millisecond))
		case <-time.After(5 * time.Second):
			t.Logf("the Service kept naming the leader's pod through the restart")
		}
	})

	t.Run("a stale file is removed when the sidecar restarts", func(t *testing.T) {
		w := w.on(t)
		leader := w.leaderNow(30 * time.Second)
		var follower *corev1.Pod
		for _, p := range w.pods(true) {
			if p.Name != leader.Name {
				follower = &p
				break
			}
		}
		before := status(follower, sidecar)
		// A crashed sidecar's file outlives it on the emptyDir: write one
		// as an earlier run of this pod's sidecar would have left it while
		// its container is down. The sampler does not count it: it is the
		// fault this case puts in.
		s.setIgnore(follower.Name, true)
		killed := killContainer(t, before.ContainerID)
		stale := statusFile(follower)
		if err := os.WriteFile(stale, []byte(follower.Name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(stale, 65532, 65532); err != nil { // the sidecar's user wrote it
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
			_, err := os.Stat(stale)
			return errors.Is(err, os.ErrNotExist), nil
		})
		removed := time.Now()
		if err != nil {
			_ = os.Remove(stale) // not to fail the cases after this one too
			s.setIgnore(follower.Name, false)
			t.Fatalf("the stale status file of %s is still there 60s after its sidecar was killed; its log ends:\n%s", follower.Name, w.sidecarLog(follower.Name))
		}
		s.setIgnore(follower.Name, false)
		// The file goes first thing in the restarted sidecar; the kubelet
		// reports the restart later.
		after := w.restarted(follower.Name, before)
		t.Logf("SIGKILL of a follower's sidecar to its stale file removed by the restarted sidecar: %s (%d to %d restarts)",
			removed.Sub(killed).Round(time.Millisecond), before.RestartCount, after.RestartCount)
		if leading, _, err := appSays(follower); err != nil || leading {
			t.Errorf("the app of %s after the restart: sees a file %v (%v)", follower.Name, leading, err)
		}
		if got := w.leaderNow(30 * time.Second); got.Name != leader.Name {
			t.Errorf("the leader changed from %s to %s", leader.Name, got.Name)
		}
	})

	t.Run("deleting the leader's pod hands over", func(t *testing.T) {
		w := w.on(t)
		leader := w.leaderNow(30 * time.Second)
		// When the old leader's file goes: its sidecar saw its pod's
		// deletion and stepped down, just before it handed the Lease on.
		removed := make(chan time.Time, 1)
		go func() {
			for t.Context().Err() == nil { // ends with the subtest
				if _, err := os.Stat(statusFile(leader)); errors.Is(err, os.ErrNotExist) {
					removed <- time.Now()
					return
				}
				time.Sleep(time.Millisecond)
			}
		}()
		deleted := time.Now()
		if err := cp.Admin.CoreV1().Pods(ns).Delete(t.Context(), leader.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		next, acquired := w.nextAcquireAfter(deleted, leader.Name, 60*time.Second)
		var stepDown time.Time
		select {
		case stepDown = <-removed:
		case <-time.After(30 * time.Second):
			t.Fatalf("the old leader %s's status file is still there 30s after another pod acquired the Lease", leader.Name)
		}
		t.Logf("kubectl delete pod of the leader to the next leader's acquire: %s; the old leader's file went %s after the delete, the next acquired %s after that (%s to %s)",
			acquired.Sub(deleted).Round(time.Millisecond), stepDown.Sub(deleted).Round(time.Millisecond), acquired.Sub(stepDown).Round(time.Millisecond), leader.Name, next)
		last := w.waitGone(leader.Name, 60*time.Second)
		appDone := status(last, app)
		scDone := status(last, sidecar)
		if appDone != nil && scDone != nil && appDone.State.Terminated != nil && scDone.State.Terminated != nil &&
			scDone.State.Terminated.FinishedAt.Before(&appDone.State.Terminated.FinishedAt) {
			t.Errorf("the sidecar stopped at %s, before the app at %s: a native sidecar stops last",
				scDone.State.Terminated.FinishedAt, appDone.State.Terminated.FinishedAt)
		}
		if acquired.Sub(deleted) > 10*time.Second {
			t.Errorf("the handover took %s: the sidecar hands the Lease over when its pod is being deleted", acquired.Sub(deleted))
		}
		w.waitReady(3, 2*time.Minute)
		got := w.leaderNow(30 * time.Second)
		if got.Name != next {
			t.Errorf("the leader is %s, the Lease went to %s", got.Name, next)
		}
		w.serviceRoutesTo(got)
	})
}

// sidecarLog is the end of the pod's sidecar log, through the kubelet.
func (w *workload) sidecarLog(pod string) string {
	tail := int64(20)
	b, err := cp.Admin.CoreV1().Pods(w.ns).GetLogs(pod, &corev1.PodLogOptions{Container: sidecar, TailLines: &tail}).DoRaw(context.Background())
	if err != nil {
		return err.Error()
	}
	return string(b)
}

// nextRenewAfter waits until the Lease is renewed (or taken) after t, and
// returns its holder and that renew time.
func (w *workload) nextRenewAfter(t0 time.Time, timeout time.Duration) (string, time.Time) {
	w.t.Helper()
	var h string
	var at time.Time
	err := wait.PollUntilContextTimeout(w.ctx(), 5*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		l := w.lease()
		if l.Spec.RenewTime != nil && l.Spec.RenewTime.After(t0) && holder(l) != "" {
			h, at = holder(l), l.Spec.RenewTime.Time
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		w.t.Fatalf("the Lease was not renewed within %s", timeout)
	}
	return h, at
}

// nextAcquireAfter waits until a pod other than old holds the Lease, and
// returns it and its acquire time.
func (w *workload) nextAcquireAfter(t0 time.Time, old string, timeout time.Duration) (string, time.Time) {
	w.t.Helper()
	var h string
	var at time.Time
	err := wait.PollUntilContextTimeout(w.ctx(), 5*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		l := w.lease()
		if hh := holder(l); hh != "" && hh != old && l.Spec.AcquireTime != nil && l.Spec.AcquireTime.After(t0) {
			h, at = hh, l.Spec.AcquireTime.Time
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		w.t.Fatalf("no other pod than %s acquired the Lease within %s", old, timeout)
	}
	return h, at
}

// serviceRoutesTo checks that the leader Service's EndpointSlices name the
// leader's pod alone, and that the address they give reaches its app.
func (w *workload) serviceRoutesTo(leader *corev1.Pod) {
	w.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(w.ctx(), 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		slices, err := cp.Admin.DiscoveryV1().EndpointSlices(w.ns).List(ctx, metav1.ListOptions{LabelSelector: "kubernetes.io/service-name=myapp-leader"})
		if err != nil {
			return false, err
		}
		var addrs []string
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready == nil || *e.Conditions.Ready {
					addrs = append(addrs, e.Addresses...)
				}
			}
		}
		last = fmt.Sprintf("%v", addrs)
		return len(addrs) == 1 && addrs[0] == leader.Status.PodIP, nil
	})
	if err != nil {
		w.t.Fatalf("Service myapp-leader routes to %s, want only the leader %s at %s", last, leader.Name, leader.Status.PodIP)
	}
	if leading, content, err := appSays(leader); err != nil || !leading || content != leader.Name+"\n" {
		w.t.Errorf("the Service's endpoint %s: sees a file %v with %q (%v)", leader.Status.PodIP, leading, content, err)
	}
}

// probedByKubelet waits until the kubelet's own prober metrics count
// successful startup, liveness and readiness probes of the pod's sidecar.
func (w *workload) probedByKubelet(p *corev1.Pod) {
	w.t.Helper()
	var last string
	err := wait.PollUntilContextTimeout(w.ctx(), time.Second, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		b, err := node.KubeletGet(ctx, "/metrics/probes")
		if err != nil {
			last = err.Error()
			return false, nil
		}
		passed := map[string]bool{}
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.HasPrefix(line, "prober_probe_total{") || !strings.Contains(line, `pod="`+p.Name+`"`) ||
				!strings.Contains(line, `container="`+sidecar+`"`) || !strings.Contains(line, `result="successful"`) ||
				strings.HasSuffix(line, " 0") {
				continue
			}
			for _, kind := range []string{"Startup", "Liveness", "Readiness"} {
				if strings.Contains(line, `probe_type="`+kind+`"`) {
					passed[kind] = true
				}
			}
		}
		last = fmt.Sprintf("successful probes counted by the kubelet: %v", passed)
		return len(passed) == 3, nil
	})
	if err != nil {
		w.t.Errorf("the kubelet's probes of %s's sidecar: %s", p.Name, last)
	}
}
