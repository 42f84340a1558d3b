package chaos

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/util/retry"

	"k8s.io/utils/ptr"

	"github.com/leader-elector/leader-elector/internal/inputs/takeover"
	"github.com/leader-elector/leader-elector/internal/leasestore"
	"github.com/leader-elector/leader-elector/internal/procstat"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// fault is one kind of round. do injects the fault into round r, holds it,
// heals it and sets r.healed to the moment the world was whole again; its
// error is a failure of the harness, not of the sidecar.
type fault struct {
	name string
	do   func(ctx context.Context, wd *world, r *round) error
}

// faults, in a fixed order: the seed picks from it.
var faults = []fault{
	{"sigkill-leader", sigkillLeader},
	{"sigstop-leader", sigstopLeader},
	{"cut-off-leader", cutOffLeader},
	{"slow-leader-pods", slowLeaderPods},
	{"restart-apiserver", restartAPIServer},
	{"restart-etcd", restartEtcd},
	{"delete-lease", deleteLease},
	{"clear-holder", clearHolder},
	{"set-holder", setHolder},
	{"unlabel-leader", unlabelLeader},
	{"revoke-rolebinding", revokeRoleBinding},
	{"readonly-statusdir", readOnlyStatusDir},
	{"sigterm-in-stepdown", sigtermInStepDown},
	{"catchall-standby", catchAllStandby},
	{"stream-flood", streamFlood},
	{"twin-follower", twinFollower},
	{"gatekeeper-fork", gatekeeperFork},
	{"delete-leader-pod", deleteLeaderPod},
}

// between draws a duration in [lo, hi] from the round's generator.
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)+1))
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// sigkillLeader: a crash or OOM kill of the leader's sidecar; the kubelet
// restarts it at once, and the new run removes the stale file first.
func sigkillLeader(ctx context.Context, wd *world, r *round) error {
	if err := r.leader.stop(syscall.SIGKILL, whySIGKILL, 5*time.Second); err != nil {
		return err
	}
	r.healed = time.Now()
	return wd.start(r.leader)
}

// sigstopLeader freezes the leader past LEASE_DURATION, so that another
// takes over while the frozen one still has its file, then thaws it.
func sigstopLeader(ctx context.Context, wd *world, r *round) error {
	hold := leaseDuration + between(r.rng, 500*time.Millisecond, 1500*time.Millisecond)
	r.notef("frozen for %s", hold.Round(time.Millisecond))
	p := r.leader.current()
	wd.tracker.freeze(r.target.name, r.leader.pod, time.Now())
	if err := p.signal(syscall.SIGSTOP); err != nil {
		return err
	}
	if err := sleep(ctx, hold); err != nil {
		return err
	}
	now := time.Now()
	wd.tracker.thaw(r.leader.pod, now)
	r.healed = now
	return p.signal(syscall.SIGCONT)
}

// cutOffLeader blackholes or resets the leader's connection to the API
// server, open watches included, for a while.
func cutOffLeader(ctx context.Context, wd *world, r *round) error {
	mode := []testcluster.Mode{testcluster.Blackhole, testcluster.Reset}[r.rng.IntN(2)]
	hold := between(r.rng, 200*time.Millisecond, 2*leaseDuration+renewDeadline)
	r.notef("%s for %s", mode, hold.Round(time.Millisecond))
	r.leader.proxy.SetMode(mode)
	if err := sleep(ctx, hold); err != nil {
		return err
	}
	r.leader.proxy.SetMode(testcluster.Pass)
	r.healed = time.Now()
	return nil
}

// slowLeaderPods delays the leader's pod requests (its labels) but not its
// Lease requests. In half the rounds an operator also hands the Lease to a
// follower meanwhile, so that the slow leader steps down with its label
// requests in flight.
func slowLeaderPods(ctx context.Context, wd *world, r *round) error {
	delay := between(r.rng, retryPeriod, 2*time.Second)
	hold := between(r.rng, leaseDuration, 2*leaseDuration)
	handover := r.rng.IntN(2) == 0
	r.notef("pod requests +%s for %s", delay.Round(time.Millisecond), hold.Round(time.Millisecond))
	r.leader.proxy.SetDelay(delay, testcluster.PodRequests)
	start := time.Now()
	if handover {
		if err := sleep(ctx, between(r.rng, 0, 500*time.Millisecond)); err != nil {
			return err
		}
		to := r.follower()
		r.notef("Lease handed to %s by hand", to.pod)
		if err := wd.writeHolder(ctx, r.target, ptr.To(to.pod)); err != nil {
			return err
		}
	}
	if err := sleep(ctx, hold-time.Since(start)); err != nil {
		return err
	}
	r.leader.proxy.SetDelay(0, testcluster.AllRequests)
	r.healed = time.Now()
	return nil
}

// restartAPIServer stops kube-apiserver, gracefully or by SIGKILL, and
// starts it again on the same port. It counts as healed once a new
// endpointslice controller routes (a canary Service follows its pod): no
// sidecar can route before that.
func restartAPIServer(ctx context.Context, wd *world, r *round) error {
	return restart(ctx, wd, r, cp.StopAPIServer, cp.StartAPIServer)
}

// restartEtcd stops etcd, gracefully or by SIGKILL, and starts it again;
// healed as restartAPIServer.
func restartEtcd(ctx context.Context, wd *world, r *round) error {
	return restart(ctx, wd, r, cp.StopEtcd, cp.StartEtcd)
}

func restart(ctx context.Context, wd *world, r *round, stop func(time.Duration) error, start func(context.Context) error) error {
	grace := []time.Duration{0, 2 * time.Second}[r.rng.IntN(2)]
	down := between(r.rng, 0, time.Second)
	if grace == 0 {
		r.notef("SIGKILL, down %s", down.Round(time.Millisecond))
	} else {
		r.notef("SIGTERM, down %s", down.Round(time.Millisecond))
	}
	if err := stop(grace); err != nil {
		r.notef("%v", err) // killed after the grace: as valid a restart
	}
	if err := sleep(ctx, down); err != nil {
		return err
	}
	if err := start(ctx); err != nil {
		return err
	}
	started := time.Now()
	// A kube-controller-manager that lived through the outage may wait out
	// its reflectors' back-off (0.8s doubling to 30s) for one informer or
	// another, and route a later round's leader a minute late, even after
	// a canary routed again. A new one lists everything at once, as a
	// restarted or failed-over controller manager would.
	if err := cp.StopControllerManager(5 * time.Second); err != nil {
		r.notef("%v", err)
	}
	if err := cp.StartControllerManager(ctx, controllers); err != nil {
		return err
	}
	at, err := wd.controlPlaneWorks(ctx, 60*time.Second)
	if err != nil {
		return err
	}
	r.healed = at
	r.notef("new controller manager routing %s after the start", at.Sub(started).Round(time.Millisecond))
	return nil
}

// deleteLease: kubectl delete lease. In half the rounds the leader's
// connection is blackholed meanwhile, so that it learns of the deletion
// late: a follower must not take over before the leader has stopped.
func deleteLease(ctx context.Context, wd *world, r *round) error {
	return whileLeaderStalled(ctx, r, func() error {
		if err := cp.Admin.CoordinationV1().Leases(wd.ns).Delete(ctx, r.target.lease, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete Lease %s: %w", r.target.lease, err)
		}
		return nil
	})
}

// clearHolder: a GitOps tool re-applies a declared Lease without a holder;
// in half the rounds while the leader is stalled, as deleteLease.
func clearHolder(ctx context.Context, wd *world, r *round) error {
	var holder *string
	if r.rng.IntN(2) == 0 {
		holder = ptr.To("")
		r.notef(`holderIdentity ""`)
	} else {
		r.notef("holderIdentity removed")
	}
	return whileLeaderStalled(ctx, r, func() error { return wd.writeHolder(ctx, r.target, holder) })
}

// whileLeaderStalled does write, in half the rounds inside a blackhole of
// the leader's connection (its watch stalls, its renews hang) that lasts up
// to past RENEW_DEADLINE, and sets r.healed.
func whileLeaderStalled(ctx context.Context, r *round, write func() error) error {
	if r.rng.IntN(2) == 0 {
		if err := write(); err != nil {
			return err
		}
		r.healed = time.Now()
		return nil
	}
	hold := between(r.rng, retryPeriod, renewDeadline+retryPeriod)
	r.notef("leader blackholed for %s around it", hold.Round(time.Millisecond))
	r.leader.proxy.SetMode(testcluster.Blackhole)
	start := time.Now()
	err := write()
	if err == nil {
		err = sleep(ctx, hold-time.Since(start))
	}
	r.leader.proxy.SetMode(testcluster.Pass)
	r.healed = time.Now()
	return err
}

// setHolder: an operator (or another elector) writes another holder: a
// name no replica has, or a follower's.
func setHolder(ctx context.Context, wd *world, r *round) error {
	to := "intruder"
	if r.rng.IntN(2) == 0 {
		to = r.follower().pod
	}
	r.notef("holder %s", to)
	if err := wd.writeHolder(ctx, r.target, ptr.To(to)); err != nil {
		return err
	}
	r.healed = time.Now()
	return nil
}

// unlabelLeader removes the leader's role label, or sets it to follower.
func unlabelLeader(ctx context.Context, wd *world, r *round) error {
	patch := `{"metadata":{"labels":{"` + roleKey + `":null}}}`
	if r.rng.IntN(2) == 0 {
		patch = `{"metadata":{"labels":{"` + roleKey + `":"follower"}}}`
		r.notef("label set to follower")
	} else {
		r.notef("label removed")
	}
	if _, err := cp.Admin.CoreV1().Pods(wd.ns).Patch(ctx, r.leader.pod, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("unlabel %s: %w", r.leader.pod, err)
	}
	r.healed = time.Now()
	return nil
}

// revokeRoleBinding takes the workload's rights away for a while: in half
// the rounds the RoleBinding is deleted (every request is forbidden), in
// the other half the Role loses "watch", as a hand-written Role might (list
// works, watch is forbidden). Then the RBAC of deploy/ is restored.
func revokeRoleBinding(ctx context.Context, wd *world, r *round) error {
	hold := between(r.rng, renewDeadline, 2*leaseDuration+renewDeadline)
	restore := r.target.binding
	if r.rng.IntN(2) == 0 {
		r.notef("RoleBinding deleted for %s", hold.Round(time.Millisecond))
		if err := cp.Admin.RbacV1().RoleBindings(wd.ns).Delete(ctx, r.target.sa, metav1.DeleteOptions{}); err != nil {
			return fmt.Errorf("delete RoleBinding %s: %w", r.target.sa, err)
		}
	} else {
		r.notef(`Role without "watch" for %s`, hold.Round(time.Millisecond))
		restore = r.target.role
		if err := cp.ApplyObjects(ctx, wd.ns, []*unstructured.Unstructured{withoutVerb(r.target.role, "watch")}); err != nil {
			return err
		}
		// Open watches outlive the change; end them, so that the sidecars
		// must watch again, as after an API server restart.
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
		for _, rep := range r.target.replicas {
			rep.proxy.SetMode(testcluster.Reset)
			rep.proxy.SetMode(testcluster.Pass)
		}
	}
	if err := sleep(ctx, hold); err != nil {
		return err
	}
	if err := cp.ApplyObjects(ctx, wd.ns, []*unstructured.Unstructured{restore.DeepCopy()}); err != nil {
		return err
	}
	r.healed = time.Now()
	return nil
}

// withoutVerb is a copy of role whose rules lack verb.
func withoutVerb(role *unstructured.Unstructured, verb string) *unstructured.Unstructured {
	out := role.DeepCopy()
	rules, _, _ := unstructured.NestedSlice(out.Object, "rules")
	for _, rule := range rules {
		m, _ := rule.(map[string]any)
		verbs, _ := m["verbs"].([]any)
		var keep []any
		for _, v := range verbs {
			if v != verb {
				keep = append(keep, v)
			}
		}
		m["verbs"] = keep
	}
	_ = unstructured.SetNestedSlice(out.Object, rules, "rules")
	return out
}

// readOnlyStatusDir makes the leader's emptyDir read-only for its sidecar
// (which runs as an unprivileged user, so the mode binds it), checks that
// this bites, and makes it writable again.
func readOnlyStatusDir(ctx context.Context, wd *world, r *round) error {
	hold := between(r.rng, 500*time.Millisecond, 2*leaseDuration)
	// Half the rounds, the leader steps down (SIGTERM) while its file
	// cannot be removed: it must keep the Lease until the file is gone.
	stepDown := r.rng.IntN(2) == 0
	r.notef("read-only for %s, SIGTERM meanwhile: %v", hold.Round(time.Millisecond), stepDown)
	l := r.leader
	p := l.current()
	if err := makeReadOnly(l); err != nil {
		return err
	}
	if err := sleep(ctx, min(hold, 2*retryPeriod)); err != nil {
		return err
	}
	if code, err := p.probe("/readyz"); err == nil {
		r.notef("/readyz %d", code)
	}
	if stepDown {
		p.expect(whySIGTERM)
		if err := p.signal(syscall.SIGTERM); err != nil {
			return err
		}
	}
	if err := sleep(ctx, hold-min(hold, 2*retryPeriod)); err != nil {
		return err
	}
	if err := os.Chmod(l.emptyDir, 0o755); err != nil {
		return err
	}
	r.healed = time.Now()
	if !stepDown {
		return nil
	}
	// Once the file can go, the step-down goes on: the next retry of the
	// removal (at most RenewDeadline apart), then the release.
	bound := timings.RenewDeadline + timings.StepDownBound() + time.Second
	select {
	case <-p.Done():
		if _, exited, _ := p.exit(); exited.Before(r.healed) {
			wd.run.violate(r, inv4, fmt.Sprintf("%s exited at %s, before its read-only status directory was writable again at %s: it cannot have removed its file",
				l.pod, exited.Format("15:04:05.000"), r.healed.Format("15:04:05.000")), l.pod)
		}
	case <-time.After(bound):
		wd.run.violate(r, inv4, fmt.Sprintf("%s did not exit within %s of its status directory becoming writable again after a SIGTERM", l.pod, bound), l.pod)
		p.Kill()
	}
	if _, err := os.Stat(l.statusFile); err == nil {
		wd.run.violate(r, inv4, fmt.Sprintf("%s exited after SIGTERM and left its status file", l.pod), l.pod)
	}
	// The withheld step-down goes on at its next retry of the removal, up
	// to RenewDeadline after the directory became writable, as documented:
	// the fault lasts until it let the Lease go, and the next leader must
	// follow within the heal bound of that.
	_, exited, _ := p.exit()
	for _, e := range wd.api.leases.between(r.target.lease, r.healed, exited.Add(time.Second)) {
		if e.deleted || e.holder != l.identity {
			r.notef("released %s after the directory was writable", e.at.Sub(r.healed).Round(time.Millisecond))
			r.healed = e.at
			break
		}
	}
	return wd.start(l)
}

func makeReadOnly(rep *replica) error {
	if err := os.Chmod(rep.emptyDir, 0o555); err != nil {
		return err
	}
	ok, err := canWriteAs(sidecarUID, rep.emptyDir)
	if err != nil {
		return err
	}
	if ok {
		return fmt.Errorf("uid %d can still write %s after chmod 0555: the fault does not bite", sidecarUID, rep.emptyDir)
	}
	return nil
}

// sigtermInStepDown makes the leader step down and sends SIGTERM while it is
// at it: its label requests are slowed, so that the step-down's label write
// takes its full RETRY_PERIOD, and its status file is deleted in a
// read-only directory, so that the sidecar cannot restore it and resigns.
// The release of the Lease must still happen, or the followers wait out
// LEASE_DURATION.
func sigtermInStepDown(ctx context.Context, wd *world, r *round) error {
	l := r.leader
	p := l.current()
	l.proxy.SetDelay(2*time.Second, testcluster.PodRequests)
	if err := makeReadOnly(l); err != nil {
		return err
	}
	if err := os.Remove(l.statusFile); err != nil {
		return fmt.Errorf("remove the status file of %s: %w", l.pod, err)
	}
	removed := time.Now()
	if err := sleep(ctx, retryPeriod/3); err != nil {
		return err
	}
	exited, err := wd.sigterm(r, p, "during a step-down")
	if err != nil {
		return err
	}
	r.healed = exited
	if err := os.Chmod(l.emptyDir, 0o755); err != nil {
		return err
	}
	l.proxy.SetDelay(0, testcluster.AllRequests)
	log := p.log()
	if !strings.Contains(log, "resign") {
		r.notef("the step-down was not under way at SIGTERM")
	}
	if !wd.releasedBetween(ctx, r.target.lease, removed, exited) {
		wd.run.violate(r, inv3release, fmt.Sprintf("%s got SIGTERM %s into a step-down and exited without releasing the Lease: the followers wait out LEASE_DURATION", l.pod, (retryPeriod/3).Round(time.Millisecond)), l.pod)
	}
	return wd.start(l)
}

// releasedBetween reports whether lease was released after from by a
// sidecar that exited at exited. The recorder hears of the release by its
// watch, which may come a little after the exit: it looks until a second
// after it.
func (wd *world) releasedBetween(ctx context.Context, lease string, from, exited time.Time) bool {
	released := func(context.Context) (bool, error) {
		for _, e := range wd.api.leases.between(lease, from, exited.Add(time.Second)) {
			if !e.deleted && e.holder == "" && e.durationSec == 1 {
				return true, nil
			}
		}
		return false, nil
	}
	return wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, max(time.Until(exited.Add(time.Second)), 10*time.Millisecond), true, released) == nil
}

// sigterm sends p SIGTERM, as the kubelet does, and waits until it exits:
// at most StepDownBound + 1s, after which it is killed and the round has
// violated invariant 4. It returns when p exited.
func (wd *world) sigterm(r *round, p *proc, during string) (time.Time, error) {
	p.expect(whySIGTERM)
	if err := p.signal(syscall.SIGTERM); err != nil {
		return time.Time{}, err
	}
	bound := timings.StepDownBound() + time.Second
	select {
	case <-p.Done():
	case <-time.After(bound):
		wd.run.violate(r, inv4, fmt.Sprintf("%s did not exit within %s (StepDownBound + 1s) of SIGTERM %s", p.r.pod, bound, during), p.r.pod)
		p.Kill()
	}
	_, exited, _ := p.exit()
	return exited, nil
}

// writeHolder writes holder (nil: none) into the workload's Lease by hand,
// renewing it now, as a person or another tool would.
func (wd *world) writeHolder(ctx context.Context, w *workload, holder *string) error {
	leases := cp.Admin.CoordinationV1().Leases(wd.ns)
	err := retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		l, err := leases.Get(ctx, w.lease, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: w.lease}}
			now := metav1.NowMicro()
			l.Spec = coordinationv1.LeaseSpec{HolderIdentity: holder, LeaseDurationSeconds: ptr.To(int32(leaseDuration / time.Second)), AcquireTime: &now, RenewTime: &now}
			_, err = leases.Create(ctx, l, metav1.CreateOptions{})
			return err
		}
		if err != nil {
			return err
		}
		now := metav1.NowMicro()
		l.Spec.HolderIdentity, l.Spec.RenewTime, l.Spec.AcquireTime = holder, &now, &now
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("write holder of Lease %s by hand: %w", w.lease, err)
	}
	return nil
}

// catchAllStandby points the standby's address in the Lease, as anyone who
// can write the Lease can, at a server that answers every request with 200
// and writes nothing (a reused pod IP with a catch-all handler), and sends
// the leader SIGTERM. Its take-over offer is answered, but nobody took the
// Lease: the step-down must still release it, not leave it to expire.
func catchAllStandby(ctx context.Context, wd *world, r *round) error {
	l := r.leader
	p := l.current()
	var offers atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == takeover.Path {
			offers.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	standby := r.follower().pod
	leases := cp.Admin.CoordinationV1().Leases(wd.ns)
	err = retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		cur, err := leases.Get(ctx, r.target.lease, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if cur.Annotations == nil {
			cur.Annotations = map[string]string{}
		}
		cur.Annotations[leasestore.AnnotationStandby] = standby
		cur.Annotations[leasestore.AnnotationStandbyAddress] = ln.Addr().String()
		_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("point the standby address of %s at a catch-all: %w", r.target.lease, err)
	}
	// The leader's next renew reads and keeps it.
	if err := sleep(ctx, 2*retryPeriod); err != nil {
		return err
	}
	marked := time.Now()
	exited, err := wd.sigterm(r, p, "with its standby's address at a catch-all")
	if err != nil {
		return err
	}
	r.healed = exited
	r.notef("offers to the catch-all: %d", offers.Load())
	if offers.Load() > 0 {
		if !wd.releasedBetween(ctx, r.target.lease, marked, exited) {
			wd.run.violate(r, inv3offer, fmt.Sprintf("%s offered the Lease to a catch-all server at the standby's address, took its 200 for a take-over and exited without releasing: the followers wait out LEASE_DURATION", l.pod), l.pod)
		}
	}
	return wd.start(l)
}

// twinFollower starts a second sidecar process with a follower's identity
// and pod UID (two electors in one pod, or a manifest that sets IDENTITY and
// POD_UID literally), with a status file of its own, lets it settle as a
// follower, and ends the leader by SIGTERM, or by SIGKILL with its pod (its
// status file) gone, so that the twins
// compete for the Lease with the third replica. At most one of the twins
// may lead: a process resumes only the term it found at its start, and a
// leader whose term is renewed under another process's key steps down.
// Healed once the twin has stopped, by SIGTERM, and the leader runs again.
func twinFollower(ctx context.Context, wd *world, r *round) error {
	f := r.follower()
	twin := wd.twins[f]
	if err := wd.start(twin); err != nil {
		return err
	}
	if err := sleep(ctx, 3*retryPeriod); err != nil {
		return err
	}
	sig, why := syscall.SIGTERM, whySIGTERM
	if r.rng.IntN(2) == 0 {
		sig, why = syscall.SIGKILL, whySIGKILL
	}
	r.notef("a twin of %s; the leader ended by %s", f.pod, why)
	if err := r.leader.stop(sig, why, timings.StepDownBound()+time.Second); err != nil {
		return err
	}
	if sig == syscall.SIGKILL {
		// Its pod is gone, and with it the emptyDir and the status file;
		// the Lease runs out.
		if err := os.Remove(r.leader.statusFile); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("remove the status file of the killed %s: %w", r.leader.pod, err)
		}
	}
	// Long enough for the Lease to run out after a SIGKILL, and for the
	// twins to see each other's writes several times.
	if err := sleep(ctx, leaseDuration+renewDeadline+between(r.rng, 0, leaseDuration)); err != nil {
		return err
	}
	switch {
	case twin.hasStatusFile():
		r.notef("the twin led")
	case f.hasStatusFile():
		r.notef("its sibling led")
	}
	if err := twin.stop(syscall.SIGTERM, whySIGTERM, timings.StepDownBound()+time.Second); err != nil {
		wd.run.violate(r, inv4, err.Error(), twin.pod)
	}
	r.healed = time.Now()
	return wd.start(r.leader)
}

// floodAddresses and floodEach make the stream flood: loopback source
// addresses and streams from each, 2,048 in all: eight times the health
// listener's cap (leaderhttp: 256 in all, 16 per client address), and
// enough that a sidecar serving them all (about 31 KB each) would pass the
// example's memory limit.
const (
	floodAddresses = 64
	floodEach      = 32
)

// exampleMemoryLimit is the sidecar's memory limit in deploy/example.yaml.
const exampleMemoryLimit = 64 << 20

// streamFlood opens event streams (GET /watch) on the leader's health port
// from many client addresses, more than the listener serves, and holds them
// while the leader serves them and while it hands over on SIGTERM. The
// sidecar must stay under the example's memory limit, answer its probes
// throughout, and hand over as it does without the flood.
func streamFlood(ctx context.Context, wd *world, r *round) error {
	l := r.leader
	p := l.current()
	fctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	var opened, refused, failed atomic.Int32
	for a := range floodAddresses {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 1, byte(a+1))}}
		client := &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}}
		for range floodEach {
			wg.Go(func() {
				req, err := http.NewRequestWithContext(fctx, http.MethodGet, p.healthURL+"/watch", nil)
				if err != nil {
					failed.Add(1)
					return
				}
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					return
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					refused.Add(1)
					return
				}
				opened.Add(1)
				_, _ = io.Copy(io.Discard, resp.Body) // until the sidecar or the round ends it
			})
		}
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		return int(opened.Load()+refused.Load()+failed.Load()) == floodAddresses*floodEach, nil
	}); err != nil {
		return fmt.Errorf("flood %s: %d streams open, %d refused, %d failed after 10s", l.pod, opened.Load(), refused.Load(), failed.Load())
	}
	if opened.Load() == 0 {
		return fmt.Errorf("flood %s: no stream was served (%d refused, %d closed unserved)", l.pod, refused.Load(), failed.Load())
	}
	// Sample the memory and the probes, as the kubelet would, while the
	// streams are open and through the handover.
	var peak atomic.Int64
	var probeFailures []string
	var mu sync.Mutex
	sctx, stopSampling := context.WithCancel(ctx)
	var samplers sync.WaitGroup
	samplers.Go(func() {
		for sctx.Err() == nil {
			if rss, err := procstat.RSS(p.pid()); err == nil && rss > peak.Load() {
				peak.Store(rss)
			}
			_ = sleep(sctx, 20*time.Millisecond)
		}
	})
	probing, stopProbing := context.WithCancel(ctx)
	samplers.Go(func() {
		for probing.Err() == nil {
			for _, path := range []string{"/healthz", "/readyz"} {
				code, err := p.probe(path)
				if probing.Err() == nil && (err != nil || code != http.StatusOK && path == "/healthz") {
					mu.Lock()
					probeFailures = append(probeFailures, fmt.Sprintf("%s %s: %d %v", time.Now().Format("15:04:05.000"), path, code, err))
					mu.Unlock()
				}
			}
			_ = sleep(probing, 100*time.Millisecond)
		}
	})
	hold := between(r.rng, 500*time.Millisecond, 2*time.Second)
	err := sleep(ctx, hold)
	stopProbing()
	var exited time.Time
	if err == nil {
		exited, err = wd.sigterm(r, p, "under a stream flood")
	}
	stopSampling()
	samplers.Wait()
	if err != nil {
		return err
	}
	r.healed = exited
	r.notef("streams: %d open, %d refused (503), %d closed unserved; held %s; RSS peak %.1f MiB", opened.Load(), refused.Load(), failed.Load(), hold.Round(time.Millisecond), float64(peak.Load())/(1<<20))
	if peak.Load() >= exampleMemoryLimit {
		wd.run.violate(r, inv6, fmt.Sprintf("%s reached %.1f MiB RSS under a stream flood, the example's limit is %d MiB", l.pod, float64(peak.Load())/(1<<20), exampleMemoryLimit>>20), l.pod)
	}
	if len(probeFailures) > 0 {
		wd.run.violate(r, inv6, fmt.Sprintf("%s failed %d probes under a stream flood: %s", l.pod, len(probeFailures), strings.Join(probeFailures[:min(len(probeFailures), 5)], "; ")), l.pod)
	}
	return wd.start(l)
}

// forkingCommand is the gatekeeper's command in gatekeeper-fork: a shell
// that forks a child and waits for it, without exec, as many real commands
// do (an "sh -c" with more than one command, a forking server). Each of its
// processes notes its pid in the directory it is given, for commandsOf.
const forkingCommand = `echo $$ > "$1/cmd-$$"
sh -c 'echo $$ > "$1/cmd-$$"; exec sleep 86400' child "$1" &
wait`

// commandsOf returns the live processes of r's command, from the pids they
// noted: running, not zombies.
func commandsOf(r *replica) []int {
	entries, _ := os.ReadDir(r.emptyDir)
	var out []int
	for _, e := range entries {
		pid, ok := strings.CutPrefix(e.Name(), "cmd-")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(pid)
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", n))
		// The state follows the command's name in parentheses.
		if i := strings.LastIndexByte(string(b), ')'); err == nil && i > 0 && i+2 < len(b) && b[i+2] != 'Z' && b[i+2] != 'X' {
			out = append(out, n)
		}
	}
	return out
}

// gatekeeperFork runs the third release's two sidecars with the gatekeeper,
// whose command forks, and sends the one leading SIGTERM: its command's
// whole process tree must end before the other's command starts, and none
// may outlive its sidecar. A sampler checks every few milliseconds that the
// processes of at most one replica's command run.
func gatekeeperFork(ctx context.Context, wd *world, r *round) error {
	g := wd.gatekept.replicas
	script := filepath.Join(wd.dir, "forking-command.sh")
	if err := os.WriteFile(script, []byte(forkingCommand), 0o755); err != nil {
		return err
	}
	// As wd.start, but the exit status after SIGTERM is the command's (the
	// shell's, killed by the forwarded SIGTERM), as with k8s-await-election.
	onExit := func(p *proc) {
		exitErr, at, expected := p.exit()
		if expected == "" {
			wd.run.violate(r, inv4, fmt.Sprintf("%s (run %d) exited by itself at %s: %v", p.r.pod, p.run, at.Format("15:04:05.000"), exitErr), p.r.pod)
		}
		if bad := crashLines(p.log()); bad != "" {
			wd.run.violate(r, inv4, fmt.Sprintf("%s (run %d) logged a crash:\n%s", p.r.pod, p.run, bad), p.r.pod)
		}
	}
	for _, x := range g {
		x.args = []string{"--", "/bin/sh", script, x.emptyDir}
		if _, err := x.start(wd.env, onExit); err != nil {
			return err
		}
	}
	// The sampler: two replicas' commands at once is a violation.
	sctx, stopSampling := context.WithCancel(ctx)
	var samples, two atomic.Int64
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for sctx.Err() == nil {
			var running []string
			for _, x := range g {
				if len(commandsOf(x)) > 0 {
					running = append(running, x.pod)
				}
			}
			samples.Add(1)
			if len(running) > 1 && two.Add(1) == 1 {
				wd.run.violate(r, inv7, fmt.Sprintf("the commands of %v ran at once at %s", running, time.Now().Format("15:04:05.000")), running...)
			}
			_ = sleep(sctx, 5*time.Millisecond)
		}
	})
	defer func() {
		stopSampling()
		sampler.Wait()
		for _, x := range g {
			if p := x.current(); p != nil && !p.exited() {
				_ = x.stop(syscall.SIGTERM, whySIGTERM, timings.StepDownBound()+time.Second)
			}
			for _, pid := range commandsOf(x) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			notes, _ := filepath.Glob(filepath.Join(x.emptyDir, "cmd-*"))
			for _, n := range notes {
				_ = os.Remove(n)
			}
		}
	}()
	leading := func() (*replica, []int) {
		for _, x := range g {
			if pids := commandsOf(x); len(pids) == 2 {
				return x, pids
			}
		}
		return nil, nil
	}
	var first *replica
	var pids []int
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 15*time.Second, true, func(context.Context) (bool, error) {
		first, pids = leading()
		return first != nil, nil
	}); err != nil {
		return fmt.Errorf("gatekeeper-fork: no sidecar of %s ran its command (a shell and its child) within 15s", wd.gatekept.name)
	}
	if err := sleep(ctx, between(r.rng, 0, 2*retryPeriod)); err != nil {
		return err
	}
	p := first.current()
	sent := time.Now()
	exited, err := wd.sigterm(r, p, "while running a forking command")
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil && slices.Contains(commandsOf(first), pid) {
			wd.run.violate(r, inv7, fmt.Sprintf("process %d of the command of %s outlived its sidecar", pid, first.pod), first.pod)
		}
	}
	var next *replica
	if err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, healBound, true, func(context.Context) (bool, error) {
		next, _ = leading()
		return next != nil && next != first, nil
	}); err != nil {
		wd.run.violate(r, inv3, fmt.Sprintf("no other sidecar of %s ran its command within %s of %s's exit", wd.gatekept.name, healBound, first.pod), first.pod)
		r.healed = time.Now()
		return nil
	}
	r.healed = time.Now()
	r.notef("gatekeeper: SIGTERM to %s, its sidecar exited after %s, %s's command ran after %s; %d samples",
		first.pod, exited.Sub(sent).Round(time.Millisecond), next.pod, r.healed.Sub(sent).Round(time.Millisecond), samples.Load())
	return nil
}

// deleteLeaderPod deletes the leader's pod, as kubectl delete, an eviction
// or a StatefulSet's rolling update does. A finalizer holds the pod object
// for a while, as the kubelet's grace period does while it stops the app;
// the sidecar, still running, must hand the Lease to a peer at once. Then
// the kubelet's SIGTERM, the pod's end, and a replacement of the same name
// with a new UID (a StatefulSet's), whose sidecar starts anew.
func deleteLeaderPod(ctx context.Context, wd *world, r *round) error {
	l := r.leader
	pods := cp.Admin.CoreV1().Pods(wd.ns)
	hold := between(r.rng, 300*time.Millisecond, 2*time.Second)
	const finalizer = "chaos.leader-elector.io/grace-period"
	old, err := pods.Patch(ctx, l.pod, types.MergePatchType, []byte(`{"metadata":{"finalizers":["`+finalizer+`"]}}`), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("hold pod %s: %w", l.pod, err)
	}
	deleted := time.Now()
	if err := pods.Delete(ctx, l.pod, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("delete pod %s: %w", l.pod, err)
	}
	if err := sleep(ctx, hold); err != nil {
		return err
	}
	var next *leaseEvent
	for _, e := range wd.api.leases.between(r.target.lease, deleted, time.Now()) {
		if !e.deleted && e.holder != "" && e.holder != l.identity {
			next = &e
			break
		}
	}
	if next == nil {
		wd.run.violate(r, inv8, fmt.Sprintf("%s's pod was deleted %s ago and no peer holds the Lease", l.pod, hold.Round(time.Millisecond)), l.pod)
		r.notef("pod deleted, SIGTERM %s later; no handover", hold.Round(time.Millisecond))
	} else {
		r.notef("pod deleted, SIGTERM %s later; handed to %s %s after the delete", hold.Round(time.Millisecond), next.holder, next.at.Sub(deleted).Round(time.Millisecond))
	}
	if _, err := wd.sigterm(r, l.current(), "after its pod's deletion"); err != nil {
		return err
	}
	if _, err := pods.Patch(ctx, l.pod, types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("release pod %s: %w", l.pod, err)
	}
	// What the kubelet does once the pod's containers stopped; there is no
	// kubelet here.
	if err := pods.Delete(ctx, l.pod, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete pod %s for good: %w", l.pod, err)
	}
	if err := wait.PollUntilContextTimeout(ctx, 10*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := pods.Get(ctx, l.pod, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	}); err != nil {
		return fmt.Errorf("pod %s still there after its finalizer went: %w", l.pod, err)
	}
	labels := map[string]string{}
	for k, v := range old.Labels {
		if k != roleKey {
			labels[k] = v
		}
	}
	created, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: l.pod, Labels: labels}, Spec: old.Spec}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("recreate pod %s: %w", l.pod, err)
	}
	if err := cp.MarkRunning(ctx, wd.ns, l.pod, l.ip); err != nil {
		return err
	}
	l.uid = string(created.UID)
	if twin := wd.twins[l]; twin != nil {
		twin.uid = l.uid
	}
	r.healed = time.Now()
	return wd.start(l)
}
