package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// startWithApp starts the sidecar of pod (which must exist) checking a.
func (f *fleet) startWithApp(pod string, a *app, env ...string) *testcluster.Sidecar {
	f.t.Helper()
	return f.start(pod, f.kubeconfig, append(append([]string{"POD_UID=" + f.podUID(pod)}, a.env()...), env...)...)
}

// appHealthy returns app_health.healthy of s's /status, and whether the
// verdict is known.
func appHealthy(st map[string]any) (healthy, checked bool) {
	h, _ := field(st, "app_health", "healthy").(bool)
	c, _ := field(st, "app_health", "checked").(bool)
	return h, c
}

// TestAppHealthMovesLeadership runs three labelled replicas behind a Service
// selecting role=leader, each checking its own app (a health endpoint in
// this process). The leader's app turns bad: the leader hands over to the
// healthy standby by a take-over, and the Service follows. Every app bad: the leader keeps
// leading and says so in /status. One app healthy again: it takes over.
func TestAppHealthMovesLeadership(t *testing.T) {
	apps := newApps(t, 3)
	f := newRoutedFleet(t, 3)
	sampleLeaders(t, "service endpoints", f.endpoints)
	sampleLeaders(t, "status files", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	byPod := map[string]*app{}
	for i := range 3 {
		pod := fmt.Sprintf("replica-%d", i)
		byPod[pod] = apps[i]
		f.startWithApp(pod, apps[i], "LABEL_POD_ROLE=true", "POD_IP=127.0.0.1")
	}
	leader := f.waitRouted(30 * time.Second)
	standby := f.waitStandby(10*time.Second, leader)
	st := waitStatus(t, f.byPod(leader), 5*time.Second, "healthy", func(st map[string]any) bool {
		h, _ := appHealthy(st)
		return h
	})
	t.Logf("%s leads, %s is standby; app_health of the leader: %v", leader, standby, st["app_health"])
	// Past APP_HEALTH_MIN_TERM, so that only the checks count.
	if v, err := f.lease(t.Context()); err == nil {
		time.Sleep(time.Until(v.acquired.Add(time.Second + 100*time.Millisecond)))
	}

	// The leader's app turns bad: 2 failed checks 200ms apart, then the
	// handover to the standby.
	start := time.Now()
	byPod[leader].setHealthy(false)
	next := f.waitNewLeader(leader, 15*time.Second).Opts.Pod
	led := time.Since(start)
	routed, gap, err := cp.WaitRouted(t.Context(), f.ns, leaderService, next, start, 15*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the app of %s turned bad: %s leads after %s, the Service routes to it alone after %s (no endpoint for %s)",
		leader, next, ms(led), ms(routed), ms(gap))
	if next != standby {
		t.Errorf("%s took over, want the standby %s", next, standby)
	}
	old := f.byPod(leader)
	st = waitStatus(t, old, 5*time.Second, "a follower with an unhealthy app", func(st map[string]any) bool {
		h, c := appHealthy(st)
		return c && !h && st["is_leader"] == false && st["leader"] == next
	})
	if reason := toString(field(st, "app_health", "reason")); !strings.Contains(reason, "503") {
		t.Errorf("app_health.reason of %s = %q, want the 503", leader, reason)
	}
	if !strings.Contains(old.Log(), "the app is unhealthy") {
		t.Errorf("%s does not log why it stepped down:\n%s", leader, old.LogTail(20))
	}

	// Every app bad. The followers' first, so that the standby of this
	// term withdraws its offer; then the leader's.
	standby = f.waitStandby(10*time.Second, next)
	var third string
	for pod, a := range byPod {
		if pod != next {
			a.setHealthy(false)
		}
		if pod != next && pod != leader {
			third = pod
		}
	}
	if standby != third {
		t.Errorf("the standby of %s's term is %s, want %s, whose app was healthy", next, standby, third)
	}
	for pod := range byPod {
		if pod != next {
			waitStatus(t, f.byPod(pod), 5*time.Second, "unhealthy", func(st map[string]any) bool {
				h, c := appHealthy(st)
				return c && !h
			})
		}
	}
	if !eventually(5*time.Second, func() bool {
		v, err := f.lease(t.Context())
		return err == nil && v.standby == ""
	}) {
		t.Fatalf("the unhealthy standby %s did not withdraw its offer", standby)
	}
	byPod[next].setHealthy(false)
	st = waitStatus(t, f.byPod(next), 10*time.Second, "leading unhealthy", func(st map[string]any) bool {
		return field(st, "app_health", "leads_unhealthy") == true
	})
	t.Logf("every app bad: /status of %s: is_leader %v, app_health %v", next, st["is_leader"], st["app_health"])
	if st["is_leader"] != true {
		t.Errorf("/status of %s: is_leader %v with leads_unhealthy", next, st["is_leader"])
	}
	for range 3 * int(retryPeriod/(100*time.Millisecond)) {
		eps, err := f.endpoints(t.Context())
		if files := f.fileHolders(); !slices.Equal(files, []string{next}) || f.holder(t.Context()) != next || err != nil || !slices.Equal(eps, []string{next}) {
			t.Fatalf("every app bad: status files %v, holder %s, endpoints %v (%v); want %s to keep leading", files, f.holder(t.Context()), eps, err, next)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.Contains(f.byPod(next).Log(), "no healthy peer offered to lead: keeps leading") {
		t.Errorf("%s does not log that it leads with an unhealthy app", next)
	}

	// One app healthy again: the unhealthy leader hands over to it. First
	// the former standby, which withdrew its offer in this term.
	for _, pod := range []string{third, leader} {
		byPod[pod].setHealthy(true)
		start := time.Now()
		if !eventually(10*time.Second, func() bool { return slices.Equal(f.fileHolders(), []string{pod}) }) {
			t.Errorf("the app of %s is healthy again, but %s keeps leading with an unhealthy app (lease %+v); log of %s:\n%s",
				pod, next, mustLease(t, f), pod, f.byPod(pod).LogTail(15))
			continue
		}
		t.Logf("the app of %s healthy again: it leads after %s", pod, ms(time.Since(start)))
		f.waitRouted(10 * time.Second)
		break
	}
	f.terminateAll(t)
}

// terminateAll stops every running sidecar with SIGTERM and checks that each
// exits with status 0: stopping is no failure.
func (f *fleet) terminateAll(t *testing.T) {
	t.Helper()
	for _, s := range f.all() {
		if s.Exited() {
			continue
		}
		if err := s.Terminate(); err != nil {
			t.Error(err)
		}
		if err := s.ExitErr(); err != nil {
			t.Errorf("%s exited with %v on SIGTERM; log:\n%s", s.Opts.Pod, err, s.LogTail(5))
		}
	}
}

func mustLease(t *testing.T, f *fleet) leaseView {
	v, err := f.lease(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestAppHealthUnhealthyWaits: a replica whose app is unhealthy from the
// start does not take leadership while a healthy one exists, although it
// starts first; it leads once no healthy replica is left, and says so.
func TestAppHealthUnhealthyWaits(t *testing.T) {
	apps := newApps(t, 3)
	apps[0].setHealthy(false)
	f := newFleet(t)
	sampleLeaders(t, "status files", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	for i := range 3 {
		f.addPod(fmt.Sprintf("replica-%d", i), testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	}
	sick := f.startWithApp("replica-0", apps[0])
	// Until no healthy replica is left, replica-0 never has a status file.
	var sickLed, healthyLeft atomic.Bool
	watchCtx, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil && !healthyLeft.Load() {
			if sick.HasStatusFile() && !healthyLeft.Load() {
				sickLed.Store(true)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	t.Cleanup(func() { stopWatch(); <-watched })
	f.startWithApp("replica-1", apps[1])
	f.startWithApp("replica-2", apps[2])

	first := f.waitLeader(30*time.Second, false)
	t.Logf("%s leads", first)
	waitStatus(t, sick, 5*time.Second, "unhealthy", func(st map[string]any) bool {
		h, c := appHealthy(st)
		return c && !h && st["leader"] == first
	})
	// A release: the healthy standby takes it, not replica-0.
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	second := f.waitLeader(leaseDuration+10*time.Second, false)
	t.Logf("%s terminated: %s leads", first, second)
	time.Sleep(2 * retryPeriod) // replica-0 campaigns a RetryPeriod late
	if sickLed.Load() || second == sick.Opts.Pod {
		t.Fatalf("replica-0, whose app is unhealthy, led while a healthy replica was left")
	}

	// No healthy replica left: the unhealthy one leads after the Lease
	// expires, and says it leads unhealthy.
	healthyLeft.Store(true)
	start := time.Now()
	if err := f.byPod(second).Kill(); err != nil {
		t.Fatal(err)
	}
	if got := f.waitLeader(leaseDuration+2*retryPeriod+10*time.Second, false); got != sick.Opts.Pod {
		t.Fatalf("leader = %s, want replica-0, the only one left", got)
	}
	t.Logf("the last healthy replica killed: replica-0 leads after %s", ms(time.Since(start)))
	waitStatus(t, sick, 5*time.Second, "leading unhealthy", func(st map[string]any) bool {
		return st["is_leader"] == true && field(st, "app_health", "leads_unhealthy") == true
	})
	apps[0].setHealthy(true)
	waitStatus(t, sick, 5*time.Second, "leading healthy", func(st map[string]any) bool {
		h, _ := appHealthy(st)
		return st["is_leader"] == true && h && field(st, "app_health", "leads_unhealthy") == false
	})
	f.terminateAll(t)
}
