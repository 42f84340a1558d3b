package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// TestThreeReplicas is the life of a fleet of three: one leader, a graceful
// handover on SIGTERM, and a handover after LeaseDuration on SIGKILL with the
// dead leader's stale label repaired. Throughout, no two status files of
// running sidecars and no two role=leader labels are ever seen. (A killed
// sidecar's file stays until its container restarts: see
// TestKilledLeaderLeavesFileUntilRestart.)
func TestThreeReplicas(t *testing.T) {
	f := newFleet(t)
	sampleLeaders(t, "status files", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	sampleLeaders(t, "role=leader labels", f.labelled)
	f.add(3, "LABEL_POD_ROLE=true")

	first := f.waitLeader(30*time.Second, true)
	t.Logf("leader: %s", first)
	b, err := os.ReadFile(f.byPod(first).StatusFile)
	if err != nil || string(b) != first+"\n" {
		t.Errorf("status file of %s holds %q (%v), want %q", first, b, err, first+"\n")
	}
	for _, s := range f.all() {
		// waitLeader saw the leader's file, Lease and label; a follower
		// started last may not have read the Lease yet. Its first
		// observation is what it reports on, so wait for that.
		var st map[string]any
		var err error
		if !eventually(10*time.Second, func() bool {
			st, err = s.Status()
			return err == nil && st["leader"] != ""
		}) {
			t.Fatalf("/status of %s names no leader: %v (%v)", s.Opts.Pod, st, err)
		}
		if st["leader"] != first || st["is_leader"] != (s.Opts.Pod == first) || st["status_file"] != s.StatusFile {
			t.Errorf("/status of %s = %v; want leader %s", s.Opts.Pod, st, first)
		}
		for _, path := range []string{"/healthz", "/livez", "/readyz"} {
			if code, body, err := s.Get(path); code != 200 {
				t.Errorf("%s of %s = %d %q (%v), want 200", path, s.Opts.Pod, code, body, err)
			}
		}
	}
	followers := eventually(10*time.Second, func() bool {
		pods, err := cp.Admin.CoreV1().Pods(f.ns).List(t.Context(), metav1.ListOptions{LabelSelector: "role=follower"})
		return err == nil && len(pods.Items) == 2
	})
	if !followers {
		t.Errorf("the two followers are not labelled role=follower")
	}

	// SIGTERM: the leader releases; a watching follower takes over at once.
	start := time.Now()
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	if f.byPod(first).HasStatusFile() {
		t.Errorf("%s kept its status file after SIGTERM", first)
	}
	second := f.waitLeader(leaseDuration, true)
	handover := time.Since(start)
	t.Logf("SIGTERM handover %s -> %s in %s", first, second, handover)
	if second == first {
		t.Fatalf("the terminated leader %s still leads", first)
	}

	// SIGKILL: nobody releases; a follower waits out LeaseDuration, and
	// demotes the dead leader's label before labelling itself.
	start = time.Now()
	if err := f.byPod(second).Kill(); err != nil {
		t.Fatal(err)
	}
	// The dead leader's last renew, stamped before it was sent: no follower
	// can have seen it earlier, so none may take the Lease before
	// LeaseDuration after it. All processes share this host's clock.
	dead, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil || dead.Spec.RenewTime == nil {
		t.Fatalf("read the Lease after SIGKILL: %v, %v", dead, err)
	}
	third := f.waitLeader(leaseDuration+retryPeriod+10*time.Second, true)
	t.Logf("SIGKILL handover %s -> %s in %s", second, third, time.Since(start))
	taken, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil || taken.Spec.AcquireTime == nil {
		t.Fatalf("read the Lease after the handover: %v, %v", taken, err)
	}
	waited := taken.Spec.AcquireTime.Sub(dead.Spec.RenewTime.Time)
	t.Logf("%s took the Lease %s after %s's last renew", third, waited, second)
	if waited < leaseDuration {
		t.Errorf("%s took the Lease %s after %s's last renew, before LeaseDuration (%s)", third, waited, second, leaseDuration)
	}
	if !f.byPod(second).HasStatusFile() {
		t.Errorf("premise: the killed leader %s cannot have removed its file", second)
	}
}

// TestKilledLeaderLeavesFileUntilRestart shows why a restarted container must
// remove the file: the killed process cannot.
func TestKilledLeaderLeavesFileUntilRestart(t *testing.T) {
	f := newFleet(t)
	f.add(1)
	leader := f.waitLeader(30*time.Second, false)
	s := f.byPod(leader)
	if err := s.Kill(); err != nil {
		t.Fatal(err)
	}
	if !s.HasStatusFile() {
		t.Fatalf("after SIGKILL the status file of %s is gone; the test premise fails", leader)
	}
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	// It removes the stale file at once, before it may win the Lease back
	// (it must first wait out the Lease it held before the kill).
	var sawGone atomic.Bool
	if !eventually(5*time.Second, func() bool {
		if !s.HasStatusFile() {
			sawGone.Store(true)
		}
		return sawGone.Load()
	}) {
		t.Fatalf("restarted sidecar kept the stale status file")
	}
	if got := f.waitLeader(leaseDuration+10*time.Second, false); got != leader {
		t.Errorf("leader = %s, want %s back after its Lease expired", got, leader)
	}
}

// TestStatusFileRestoredWhileLeading deletes and overwrites the leader's file.
func TestStatusFileRestoredWhileLeading(t *testing.T) {
	f := newFleet(t)
	f.add(1)
	leader := f.waitLeader(30*time.Second, false)
	s := f.byPod(leader)
	for _, tamper := range []struct {
		name string
		do   func() error
	}{
		{"delete", func() error { return os.Remove(s.StatusFile) }},
		{"overwrite", func() error { return os.WriteFile(s.StatusFile, []byte("someone-else\n"), 0o644) }},
	} {
		if err := tamper.do(); err != nil {
			t.Fatal(err)
		}
		ok := eventually(5*time.Second, func() bool {
			b, err := os.ReadFile(s.StatusFile)
			return err == nil && string(b) == leader+"\n"
		})
		if !ok {
			t.Errorf("after %s, the status file was not restored", tamper.name)
		}
	}
	if !strings.Contains(s.Log(), "restoring it") {
		t.Errorf("no warning logged about restoring the status file")
	}
}

// TestUnwritableStatusFileGivesTheLeaseBack: a replica that cannot announce
// its leadership must not hold it.
func TestUnwritableStatusFileGivesTheLeaseBack(t *testing.T) {
	f := newFleet(t)
	f.addPod("broken", testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	// The status path's directory is missing.
	broken := f.start("broken", f.kubeconfig, "STATUS_FILE="+filepath.Join(f.dir, "missing", "leader_status"))
	// It wins the free Lease, cannot write the file, and gives the Lease back.
	ok := eventually(20*time.Second, func() bool {
		st, err := broken.Status()
		return err == nil && strings.Contains(toString(st["status_file_error"]), "missing") && st["is_leader"] == false &&
			strings.Contains(broken.Log(), "cannot announce leadership, giving the Lease back") &&
			strings.Contains(broken.Log(), "released lease")
	})
	if !ok {
		t.Fatalf("the replica with a missing status directory did not report the error and give the Lease back; log:\n%s", broken.LogTail(30))
	}
	if code, body, _ := broken.Get("/readyz"); code != 503 || !strings.Contains(body, "missing") {
		t.Errorf("/readyz = %d %q, want 503 naming the status directory", code, body)
	}
	if code, _, _ := broken.Get("/livez"); code != 200 {
		t.Errorf("/livez = %d, want 200: the process is fine, only not ready", code)
	}
	f.add(1)
	got := f.waitLeader(leaseDuration+10*time.Second, false)
	if got != "replica-1" {
		t.Errorf("leader = %s, want the healthy replica-1", got)
	}
	if h := f.holder(t.Context()); h != got {
		t.Errorf("lease holder = %q, want %q", h, got)
	}
}

// TestMissingRBACIsReportedAndRecovers runs a sidecar whose ServiceAccount
// has no rights yet: it reports the error once, stays alive, and leads as
// soon as the Role of deploy/ is bound.
func TestMissingRBACIsReportedAndRecovers(t *testing.T) {
	ctx := t.Context()
	ns := testcluster.Namespace(t, cp)
	objs, err := testcluster.ReadManifests(filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	saOnly := filepath.Join(t.TempDir(), "sa.yaml")
	b, _ := objs[0].MarshalJSON() // the ServiceAccount alone
	if err := os.WriteFile(saOnly, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := cp.ApplyManifests(ctx, ns, saOnly); err != nil {
		t.Fatal(err)
	}
	f := &fleet{t: t, ns: ns, dir: t.TempDir()}
	t.Cleanup(f.stop)
	if f.kubeconfig, err = cp.ServiceAccountKubeconfig(ctx, ns, testcluster.ServiceAccount, f.dir); err != nil {
		t.Fatal(err)
	}
	f.add(1, "LABEL_POD_ROLE=true")
	s := f.all()[0]
	if !eventually(15*time.Second, func() bool {
		st, err := s.Status()
		return err == nil && strings.Contains(toString(st["last_error"]), "forbidden")
	}) {
		t.Fatalf("/status does not report the missing RBAC; log:\n%s", s.LogTail(30))
	}
	if code, _, _ := s.Get("/readyz"); code != 503 {
		t.Errorf("/readyz = %d without RBAC, want 503", code)
	}
	time.Sleep(3 * retryPeriod) // several failed attempts
	if n := strings.Count(s.Log(), `msg="election error"`); n != 1 {
		t.Errorf("the election error was logged %d times, want once per distinct error", n)
	}
	if err := cp.ApplyManifests(ctx, ns, filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	f.waitLeader(20*time.Second, true)
}

// TestClientGoInterop shares one Lease between our sidecar and client-go's
// LeaderElector (ReleaseOnCancel), handing over both ways, never with two
// leaders.
func TestClientGoInterop(t *testing.T) {
	f := newFleet(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", f.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)

	var clientGoLeads atomic.Bool
	runClientGo := func(ctx context.Context) chan struct{} {
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Name: leaseName, Namespace: f.ns},
				Client:     client.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: "client-go"},
			},
			LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { clientGoLeads.Store(true) },
				OnStoppedLeading: func() { clientGoLeads.Store(false) },
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); le.Run(ctx) }()
		return done
	}
	sampleLeaders(t, "status file or client-go", func(context.Context) ([]string, error) {
		cg := clientGoLeads.Load()
		leaders := f.fileHolders()
		if cg && clientGoLeads.Load() {
			leaders = append(leaders, "client-go")
		}
		return leaders, nil
	})

	// Ours leads first; client-go follows.
	f.add(1)
	ours := f.waitLeader(30*time.Second, false)
	ctx, cancel := context.WithCancel(t.Context())
	done := runClientGo(ctx)
	t.Cleanup(func() { cancel(); <-done })
	time.Sleep(2 * retryPeriod)
	if clientGoLeads.Load() {
		t.Fatalf("client-go leads while %s holds the Lease", ours)
	}

	// Ours is terminated: it releases, client-go takes over on its next poll.
	if err := f.byPod(ours).Terminate(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if !eventually(leaseDuration, func() bool { return clientGoLeads.Load() }) {
		t.Fatalf("client-go did not take the released Lease within %s", leaseDuration)
	}
	t.Logf("ours -> client-go in %s", time.Since(start))
	if h := f.holder(t.Context()); h != "client-go" {
		t.Errorf("lease holder = %q, want client-go", h)
	}

	// Ours starts again and follows; client-go releases on cancel, and ours,
	// watching, takes over at once.
	s := f.byPod(ours)
	if err := s.Restart(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * retryPeriod)
	if s.HasStatusFile() {
		t.Fatalf("ours leads while client-go holds the Lease")
	}
	// client-go's ReleaseOnCancel releases the Lease before it calls
	// OnStoppedLeading, and asks that the work the Lease guards has ended
	// before the context is cancelled: an app that keeps that contract has
	// stopped leading here.
	start = time.Now()
	clientGoLeads.Store(false)
	cancel()
	<-done
	if got := f.waitLeader(leaseDuration, false); got != ours {
		t.Fatalf("leader = %s, want %s", got, ours)
	}
	t.Logf("client-go -> ours in %s", time.Since(start))
}

func toString(v any) string {
	s, _ := v.(string)
	return s
}

// TestWatchRecoversFromGone: a follower whose Lease does not change keeps
// an old resourceVersion while the rest of the cluster moves on. After a
// kube-apiserver restart its watch cache starts later, so resuming from that
// version answers 410 Gone; the follower must list the Lease again, watch
// from there, and still take a released Lease at once. The follower reaches
// the API server through a proxy that is cut off during the restart, until
// the new server serves the ServiceAccount: before its RBAC cache is synced
// it answers 403, which the follower survives too, but by listing again
// without ever meeting the 410 this test is about.
func TestWatchRecoversFromGone(t *testing.T) {
	f := newFleet(t)
	ctx := t.Context()
	// Another elector holds the Lease for an hour and never renews.
	holder, hour := "other-elector", int32(3600)
	now := metav1.NowMicro()
	if _, err := cp.Admin.CoordinationV1().Leases(f.ns).Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: leaseName},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &hour, AcquireTime: &now, RenewTime: &now},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	f.addPod("replica-0", testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	token, err := cp.PodBoundToken(ctx, f.ns, testcluster.ServiceAccount, "replica-0")
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := testcluster.NewProxy(cp.URL, cp.CAData, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(proxy.Close)
	kubeconfig := filepath.Join(f.dir, "via-proxy.kubeconfig")
	if err := testcluster.WriteKubeconfig(kubeconfig, proxy.URL, nil, ""); err != nil {
		t.Fatal(err)
	}
	s := f.start("replica-0", kubeconfig)
	if !eventually(10*time.Second, func() bool {
		st, err := s.Status()
		return err == nil && st["watching"] == true && st["leader"] == holder
	}) {
		t.Fatalf("the follower does not watch the Lease")
	}
	// Move the cluster's resourceVersion past the follower's.
	for i := range 3 {
		if _, err := cp.Admin.CoreV1().ConfigMaps(f.ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bump-%d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	proxy.SetDown(true)
	_ = cp.StopAPIServer(0) // SIGKILL at once: a crash
	if err := cp.StartAPIServer(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(cp.AdminConfig)
	cfg.BearerToken = token
	sa := kubernetes.NewForConfigOrDie(cfg)
	if !eventually(30*time.Second, func() bool {
		_, err := sa.CoordinationV1().Leases(f.ns).Get(ctx, leaseName, metav1.GetOptions{})
		return err == nil
	}) {
		t.Fatalf("the restarted API server does not serve the ServiceAccount")
	}
	proxy.SetDown(false)
	if !eventually(20*time.Second, func() bool { return strings.Contains(s.Log(), "lease watch history is gone (410)") }) {
		t.Fatalf("the follower's resumed watch never got 410 Gone; log:\n%s", s.LogTail(20))
	}
	if !eventually(20*time.Second, func() bool {
		st, err := s.Status()
		return err == nil && st["watching"] == true
	}) {
		t.Fatalf("the follower does not watch again after 410")
	}
	// The other elector releases: a watching follower takes over at once,
	// long before the hour is up.
	takeLease(t, f, "")
	if got := f.waitLeader(10*time.Second, false); got != s.Opts.Pod {
		t.Errorf("leader = %s, want %s", got, s.Opts.Pod)
	}
}
