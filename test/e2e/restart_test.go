package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// maxRestartTakeover is the most the test allows from the restart of a killed
// leader's sidecar until a leader leads again.
const maxRestartTakeover = time.Second

// freshFile reports whether s runs and has a status file written after old
// (the modification time of the file a killed process left, or zero).
func freshFile(s *testcluster.Sidecar, old time.Time) bool {
	if s.Exited() {
		return false
	}
	fi, err := os.Stat(s.StatusFile)
	return err == nil && fi.ModTime().After(old)
}

// TestRestartResumesTerm: the leader's sidecar is killed with SIGKILL and
// restarted with the same identity and POD_UID, in the same emptyDir, as the
// kubelet restarts a crashed container. The new process removes the stale
// status file first, finds its own term in the Lease (the holder-uid
// annotation is its pod's), and resumes it at once, without a new term,
// while the followers never lead.
func TestRestartResumesTerm(t *testing.T) {
	f := newFleet(t)
	sampleLeaders(t, "status files", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	sampleLeaders(t, "role=leader labels", f.labelled)
	for i := range 3 {
		pod := fmt.Sprintf("replica-%d", i)
		f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		f.start(pod, f.kubeconfig, "LABEL_POD_ROLE=true", "POD_UID="+f.podUID(pod))
	}
	leader := f.waitLeader(30*time.Second, true)
	s := f.byPod(leader)
	uid := f.podUID(leader)
	var before leaseView
	if !eventually(10*time.Second, func() bool {
		var err error
		before, err = f.lease(t.Context())
		return err == nil && before.holder == leader && before.holderUID == uid
	}) {
		t.Fatalf("the Lease does not carry the leader's pod UID %s: %+v", uid, before)
	}

	for round := range 2 {
		fi, err := os.Stat(s.StatusFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Kill(); err != nil {
			t.Fatal(err)
		}
		if !s.HasStatusFile() {
			t.Fatalf("premise: the killed leader %s cannot have removed its file", leader)
		}
		start := time.Now()
		if err := s.Restart(); err != nil {
			t.Fatal(err)
		}
		if !eventually(10*time.Second, func() bool { return freshFile(s, fi.ModTime()) }) {
			t.Fatalf("round %d: the restarted %s did not write its status file again; log:\n%s", round, leader, s.LogTail(30))
		}
		took := time.Since(start)
		t.Logf("round %d: restart of %s to its status file written again: %s", round, leader, ms(took))
		if took > maxRestartTakeover {
			t.Errorf("round %d: the restarted leader led again %s after its restart, more than %s", round, ms(took), maxRestartTakeover)
		}
		if b, err := os.ReadFile(s.StatusFile); err != nil || string(b) != leader+"\n" {
			t.Errorf("round %d: status file holds %q (%v), want %q", round, b, err, leader+"\n")
		}
		st := waitStatus(t, s, 5*time.Second, "leading", func(st map[string]any) bool { return st["is_leader"] == true })
		t.Logf("round %d: /status of the restarted %s: is_leader %v, transitions %v", round, leader, st["is_leader"], st["transitions"])

		// The stale file went first, then the term resumed.
		removed, resumed := logIndex(s, "removed a stale status file"), logIndex(s, "resumed this pod's term after a restart")
		if removed < 0 || resumed < 0 || removed > resumed {
			t.Errorf("round %d: the log does not show the stale file removed (at %d) before the term resumed (at %d):\n%s", round, removed, resumed, s.LogTail(30))
		}
		// Resumed: the same term, with no new transition.
		after, err := f.lease(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if after.holder != leader || after.holderUID != uid || after.transitions != before.transitions || !after.acquired.Equal(before.acquired) {
			t.Errorf("round %d: Lease after the restart = %+v, want the term of %s resumed: %+v", round, after, leader, before)
		}
	}
	if got := f.waitLeader(5*time.Second, true); got != leader {
		t.Errorf("leader = %s, want %s", got, leader)
	}
}

// TestRestartWithoutProof: the leader's Lease carries no pod UID, as one
// written by a sidecar run without POD_UID (an older version) has. Its
// container is killed and restarts with POD_UID: it cannot prove the term is
// its own, so it releases the Lease at once, and a leader leads within a
// second of the restart, never two.
func TestRestartWithoutProof(t *testing.T) {
	f := newFleet(t)
	sampleLeaders(t, "status files", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	f.addPod("replica-0", testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	old := f.start("replica-0", f.kubeconfig) // no POD_UID
	if got := f.waitLeader(30*time.Second, false); got != "replica-0" {
		t.Fatalf("leader = %s, want replica-0", got)
	}
	if v, err := f.lease(t.Context()); err != nil || v.holderUID != "" {
		t.Fatalf("premise: the Lease of a sidecar without POD_UID carries a pod UID: %+v (%v)", v, err)
	}
	f.addPod("replica-1", testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	peer := f.start("replica-1", f.kubeconfig, "POD_UID="+f.podUID("replica-1"))
	waitStatus(t, peer, 10*time.Second, "watching replica-0", func(st map[string]any) bool {
		return st["leader"] == "replica-0" && st["watching"] == true
	})

	fi, err := os.Stat(old.StatusFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Kill(); err != nil {
		t.Fatal(err)
	}
	// The new image brings POD_UID.
	old.Opts.Env = append(slices.Clone(old.Opts.Env), "POD_UID="+f.podUID("replica-0"))
	start := time.Now()
	if err := old.Restart(); err != nil {
		t.Fatal(err)
	}
	var next string
	if !eventually(10*time.Second, func() bool {
		h := f.holder(t.Context())
		switch {
		case h == "replica-1" && freshFile(peer, time.Time{}):
			next = h
		case h == "replica-0" && freshFile(old, fi.ModTime()):
			next = h
		}
		return next != ""
	}) {
		t.Fatalf("no leader after the restart; logs:\n%s\n---\n%s", old.LogTail(20), peer.LogTail(20))
	}
	took := time.Since(start)
	t.Logf("restart of replica-0 (Lease without pod UID) to %s leading: %s", next, ms(took))
	if took > maxRestartTakeover {
		t.Errorf("%s led %s after the restart, more than %s", next, ms(took), maxRestartTakeover)
	}
	if !strings.Contains(old.Log(), "cannot be proven to be this pod's term from before a restart; releasing it") {
		t.Errorf("the restarted replica-0 did not say why it released the Lease:\n%s", old.LogTail(20))
	}
	if got := f.waitLeader(10*time.Second, false); got != next {
		t.Errorf("leader = %s, want %s", got, next)
	}
}

// twinIdentity is the one identity two pods share, as two pods with the same
// spec.hostname do.
const twinIdentity = "twin"

// twinFiles returns the twins whose status file exists, whether their
// sidecar runs or not (a killed one's file stays until it restarts). Each
// file is looked at twice, as fleet.fileHolders does.
func twinFiles(twins []*testcluster.Sidecar) []string {
	first := make([]bool, len(twins))
	for i, s := range twins {
		first[i] = s.HasStatusFile()
	}
	var out []string
	for i, s := range twins {
		if first[i] && s.HasStatusFile() {
			out = append(out, s.Opts.Pod)
		}
	}
	return out
}

// TestTwinsNeverBothLead runs two pods that share one identity (IDENTITY, as
// the same hostname gives) with their own POD_UIDs, and a third replica.
// Through a SIGKILL and restart of the leading twin, a handover from one twin
// to the other, a SIGKILL and restart of the other, and a handover to the
// shared identity, the twins never both
// lead: never two status files at once (the twins' counted even while one is
// dead), and the Lease's holder-uid always names the twin that leads. A twin
// that finds its identity with the other's UID waits for that term to end.
func TestTwinsNeverBothLead(t *testing.T) {
	f := newFleet(t)
	uid := map[string]string{}
	// Each pod has a loopback IP of its own, for the take-overs of resign.
	f.ips = map[string]string{"twin-a": "127.0.0.20", "twin-b": "127.0.0.21", "replica-c": "127.0.0.22"}
	for _, pod := range []string{"twin-a", "twin-b", "replica-c"} {
		f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		if err := cp.MarkRunning(t.Context(), f.ns, pod, f.ips[pod]); err != nil {
			t.Fatal(err)
		}
		uid[pod] = f.podUID(pod)
	}
	twin := func(pod string) *testcluster.Sidecar {
		return f.start(pod, f.kubeconfig, "IDENTITY="+twinIdentity, "POD_UID="+uid[pod])
	}
	a := twin("twin-a")
	var twinsMu sync.Mutex
	twins := []*testcluster.Sidecar{a}
	sampleLeaders(t, "status files of running sidecars", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	sampleLeaders(t, "status files of the twins", func(context.Context) ([]string, error) {
		twinsMu.Lock()
		defer twinsMu.Unlock()
		return twinFiles(twins), nil
	})
	// The Lease names the twin identity with the UID of the one twin whose
	// file exists, whenever exactly one twin's does.
	var leaseMu sync.Mutex
	var leaseBad []string
	sampleLeaders(t, "twin with a status file but another's term", func(ctx context.Context) ([]string, error) {
		twinsMu.Lock()
		files := twinFiles(twins)
		twinsMu.Unlock()
		v, err := f.lease(ctx)
		if err != nil || len(files) != 1 {
			return nil, err
		}
		again := func() bool { // the file outlived the read of the Lease
			twinsMu.Lock()
			defer twinsMu.Unlock()
			f := twinFiles(twins)
			return len(f) == 1 && f[0] == files[0]
		}
		if v.holder != twinIdentity || v.holderUID != uid[files[0]] {
			if again() && !f.byPod(files[0]).Exited() {
				leaseMu.Lock()
				if len(leaseBad) < 10 {
					leaseBad = append(leaseBad, fmt.Sprintf("%s has its status file, the Lease names %s/%s", files[0], v.holder, v.holderUID))
				}
				leaseMu.Unlock()
			}
		}
		return nil, nil
	})
	t.Cleanup(func() {
		leaseMu.Lock()
		defer leaseMu.Unlock()
		for _, b := range leaseBad {
			t.Error(b)
		}
	})

	// waitTwin waits until s alone leads: its file, the Lease naming the
	// twin identity with its UID.
	waitTwin := func(s *testcluster.Sidecar, old, start time.Time, timeout time.Duration) time.Duration {
		t.Helper()
		var last string
		if !eventually(timeout, func() bool {
			v, err := f.lease(t.Context())
			files := f.fileHolders()
			last = fmt.Sprintf("status files %v, lease %+v (%v)", files, v, err)
			return err == nil && v.holder == twinIdentity && v.holderUID == uid[s.Opts.Pod] &&
				len(files) == 1 && files[0] == s.Opts.Pod && freshFile(s, old)
		}) {
			t.Fatalf("%s does not lead alone within %s: %s", s.Opts.Pod, timeout, last)
		}
		return time.Since(start)
	}
	// notLeading checks for d that s runs as a follower of the other twin.
	notLeading := func(s *testcluster.Sidecar, d time.Duration) {
		t.Helper()
		deadline := time.Now().Add(d)
		for time.Now().Before(deadline) {
			if s.HasStatusFile() {
				t.Fatalf("%s has a status file while its twin leads", s.Opts.Pod)
			}
			time.Sleep(20 * time.Millisecond)
		}
		st, err := s.Status()
		if err != nil || st["identity"] != twinIdentity || st["leader"] != twinIdentity || st["is_leader"] != false {
			t.Errorf("/status of %s = %v (%v), want a follower of %s", s.Opts.Pod, st, err, twinIdentity)
		}
	}

	waitTwin(a, time.Time{}, time.Now(), 30*time.Second)
	b := twin("twin-b")
	twinsMu.Lock()
	twins = append(twins, b)
	twinsMu.Unlock()
	c := f.start("replica-c", f.kubeconfig, "POD_UID="+uid["replica-c"])
	if !eventually(10*time.Second, func() bool {
		return strings.Contains(b.Log(), "the lease names this identity but another pod: two pods share one identity; waiting for its term to end")
	}) {
		t.Fatalf("twin-b does not say it waits for its twin's term:\n%s", b.LogTail(20))
	}
	notLeading(b, 4*retryPeriod)

	// SIGKILL of the leading twin, restarted at once: it resumes its term;
	// the other twin, sharing its identity, does not take it.
	fi, err := os.Stat(a.StatusFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("twin-a restarted after SIGKILL, leads again %s after its restart", ms(waitTwin(a, fi.ModTime(), start, 10*time.Second)))
	notLeading(b, 4*retryPeriod)

	// The other twin takes over when the term ends: twin-a (with replica-c
	// gone) steps down on SIGTERM.
	if err := c.Terminate(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := a.Terminate(); err != nil {
		t.Fatal(err)
	}
	t.Logf("twin-a terminated, twin-b leads %s after the SIGTERM", ms(waitTwin(b, time.Time{}, start, leaseDuration+10*time.Second)))

	// twin-a comes back: it finds its identity with twin-b's UID and waits.
	if err := a.Restart(); err != nil {
		t.Fatal(err)
	}
	if !eventually(10*time.Second, func() bool {
		st, err := a.Status()
		return err == nil && st["leader"] == twinIdentity && st["watching"] == true
	}) {
		t.Fatalf("the restarted twin-a does not follow:\n%s", a.LogTail(20))
	}
	notLeading(a, 4*retryPeriod)
	if !strings.Contains(a.Log(), "two pods share one identity; waiting for its term to end") {
		t.Errorf("the restarted twin-a does not say it waits for twin-b's term:\n%s", a.LogTail(20))
	}

	// SIGKILL of twin-b, restarted at once: it resumes, twin-a waits.
	fi, err = os.Stat(b.StatusFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Kill(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := b.Restart(); err != nil {
		t.Fatal(err)
	}
	t.Logf("twin-b restarted after SIGKILL, leads again %s after its restart", ms(waitTwin(b, fi.ModTime(), start, 10*time.Second)))
	notLeading(a, 4*retryPeriod)

	// A handover to the shared identity goes to one twin: the standby, at
	// the address beside its offer (no pod is named "twin"), which takes
	// it over by its own write, with its own UID; the other twin follows.
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, c, 10*time.Second, "following "+twinIdentity, func(st map[string]any) bool {
		return st["leader"] == twinIdentity && st["watching"] == true
	})
	if code, _, stderr := startResign(t, b, "--to", "replica-c").wait(t); code != 0 {
		t.Fatalf("resign --to replica-c on twin-b: exit %d: %s", code, stderr)
	}
	if got := f.waitLeader(10*time.Second, false); got != "replica-c" {
		t.Fatalf("leader = %s, want replica-c", got)
	}
	for _, s := range []*testcluster.Sidecar{a, b} {
		waitStatus(t, s, 10*time.Second, "following replica-c", func(st map[string]any) bool { return st["leader"] == "replica-c" })
	}
	if standby := f.waitStandby(10*time.Second, "replica-c"); standby != twinIdentity {
		t.Fatalf("standby = %q, want a twin", standby)
	}
	if code, _, stderr := startResign(t, c, "--to", twinIdentity).wait(t); code != 0 {
		t.Fatalf("resign --to %s on replica-c: exit %d: %s", twinIdentity, code, stderr)
	}
	var won string
	if !eventually(10*time.Second, func() bool {
		files := f.fileHolders()
		v, err := f.lease(t.Context())
		if err != nil || len(files) != 1 || v.holder != twinIdentity || v.holderUID != uid[files[0]] {
			return false
		}
		won = files[0]
		return true
	}) {
		t.Fatalf("no twin leads alone after the handover to %s: status files %v, lease %+v", twinIdentity, f.fileHolders(), mustLease(t, f))
	}
	loser := a
	if won == a.Opts.Pod {
		loser = b
	}
	t.Logf("the Lease handed to %s: %s leads, %s follows", twinIdentity, won, loser.Opts.Pod)
	notLeading(loser, 3*retryPeriod)
}
