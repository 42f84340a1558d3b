package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// podResult is what deploy/example.yaml measured in real pods.
type podResult struct {
	na     string        // why it did not run, or ""
	ready  time.Duration // apply to three ready pods
	delete []time.Duration
	// stop is the kubelet's share of delete: until the old leader's status
	// file went (app stopped, then the sidecar stepped down).
	stop    []time.Duration
	restart []time.Duration
	// kubelet is the kubelet's share of restart: kill to the new
	// container's start.
	kubelet []time.Duration
}

// pods runs deploy/example.yaml as three real pods on node and, over BENCH_POD_ROUNDS rounds, kills the
// leader's sidecar (the kubelet restarts it and it resumes), then deletes
// the leader's pod (the next pod leads), so every kill hits a sidecar that
// never restarted: the kubelet's crash-loop back-off stays out of it.
func (b *bench) pods(ctx context.Context, node *testcluster.Node, rounds int) *podResult {
	r := &podResult{}
	ns, err := b.cp.CreateNamespace(ctx, "bench-pods")
	if err != nil {
		r.na = "n/a: " + err.Error()
		return r
	}
	if err := b.podRounds(ctx, node, ns, rounds, r); err != nil {
		r.na = fmt.Sprintf("ended early after %d rounds: %v", len(r.delete), err)
	}
	if err := b.cp.DeleteExample(context.Background(), ns, 90*time.Second); err != nil {
		b.log.Error("delete the example", "err", err)
	}
	return r
}

func (b *bench) podRounds(ctx context.Context, node *testcluster.Node, ns string, rounds int, r *podResult) error {
	objs, err := testcluster.KustomizeDeploy(node.PodOverlay(ns))
	if err != nil {
		return err
	}
	start := time.Now()
	if err := b.cp.ApplyObjects(ctx, ns, objs); err != nil {
		return err
	}
	if _, err := b.cp.WaitExamplePods(ctx, ns, 3, 3*time.Minute); err != nil {
		return err
	}
	r.ready = time.Since(start)
	for i := range rounds {
		l, err := b.cp.WaitLease(ctx, ns, 30*time.Second, "held", func(l *coordinationv1.Lease) bool { return testcluster.Holder(l) != "" })
		if err != nil {
			return err
		}
		leader, err := b.cp.Admin.CoreV1().Pods(ns).Get(ctx, testcluster.Holder(l), metav1.GetOptions{})
		if err != nil {
			return err
		}
		sc := testcluster.ContainerStatus(leader, testcluster.SidecarContainer)
		killed, err := node.KillContainer(ctx, sc.ContainerID)
		if err != nil {
			return err
		}
		l, err = b.cp.WaitLease(ctx, ns, time.Minute, "renewed after the kill", func(l *coordinationv1.Lease) bool {
			return testcluster.Holder(l) != "" && l.Spec.RenewTime != nil && l.Spec.RenewTime.After(killed)
		})
		if err != nil {
			return err
		}
		started, err := b.cp.SidecarStarted(ctx, ns, leader.Name, killed, 30*time.Second)
		if err != nil {
			return err
		}
		r.restart = append(r.restart, l.Spec.RenewTime.Sub(killed))
		r.kubelet = append(r.kubelet, started.Sub(killed))
		if _, err := b.cp.WaitExamplePods(ctx, ns, 3, 2*time.Minute); err != nil {
			return err
		}

		leader, err = b.cp.Admin.CoreV1().Pods(ns).Get(ctx, testcluster.Holder(l), metav1.GetOptions{})
		if err != nil {
			return err
		}
		gone := fileGone(ctx, filepath.Join(node.EmptyDirPath(leader.UID, "tmp"), "leader_status"))
		deleted := time.Now()
		if err := b.cp.Admin.CoreV1().Pods(ns).Delete(ctx, leader.Name, metav1.DeleteOptions{}); err != nil {
			return err
		}
		l, err = b.cp.WaitLease(ctx, ns, time.Minute, "taken by another pod", func(l *coordinationv1.Lease) bool {
			h := testcluster.Holder(l)
			return h != "" && h != leader.Name && l.Spec.AcquireTime != nil && l.Spec.AcquireTime.After(deleted)
		})
		if err != nil {
			return err
		}
		r.delete = append(r.delete, l.Spec.AcquireTime.Sub(deleted))
		select {
		case at := <-gone:
			if !at.IsZero() {
				r.stop = append(r.stop, at.Sub(deleted))
			}
		case <-time.After(30 * time.Second):
			return fmt.Errorf("the old leader %s's status file still there 30s after the next leader acquired", leader.Name)
		}
		if _, err := b.cp.WaitExamplePods(ctx, ns, 3, 2*time.Minute); err != nil {
			return err
		}
		b.log.Info("real pods", "round", i+1, "restart", r.restart[i], "delete", r.delete[i])
	}
	return nil
}

// fileGone reports when path stops existing, polled every millisecond
// (the zero time if ctx ends first).
func fileGone(ctx context.Context, path string) <-chan time.Time {
	ch := make(chan time.Time, 1)
	go func() {
		for ctx.Err() == nil {
			if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
				ch <- time.Now()
				return
			}
			time.Sleep(time.Millisecond)
		}
		ch <- time.Time{}
	}()
	return ch
}

// markdown prints the real-pod table.
func (r *podResult) markdown(w io.Writer, rounds int) {
	fmt.Fprintf(w, "\nReal pods: deploy/example.yaml (3 replicas, the native sidecar beside the app) on a real kubelet and containerd node, leader-elector only (BENCH_POD_ROUNDS=%d):\n\n", rounds)
	if r.na != "" && len(r.delete) == 0 {
		fmt.Fprintf(w, "%s\n", r.na)
		return
	}
	fmt.Fprintf(w, "| measure | p50 / max |\n|---|---|\n")
	fmt.Fprintf(w, "| kubectl apply to 3 ready pods | %s |\n", fmtDur(r.ready))
	fmt.Fprintf(w, "| sidecar SIGKILL to its resumed term (the Lease renewed), n=%d | %s |\n", len(r.restart), p50max(r.restart))
	fmt.Fprintf(w, "| of which the kubelet: SIGKILL to the new container's start, n=%d | %s |\n", len(r.kubelet), p50max(r.kubelet))
	fmt.Fprintf(w, "| delete of the leader's pod to the next leader's acquire, n=%d | %s |\n", len(r.delete), p50max(r.delete))
	fmt.Fprintf(w, "| of which the kubelet: delete until the old leader's file went (app stopped, then the sidecar), n=%d | %s |\n", len(r.stop), p50max(r.stop))
	if r.na != "" {
		fmt.Fprintf(w, "\n%s\n", r.na)
	}
}
