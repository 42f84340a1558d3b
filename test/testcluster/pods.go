package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// What deploy/example.yaml runs, as the real-pod tests, the demo and the
// benchmark use it.
const (
	ExampleApp       = "myapp"      // Deployment name and app label
	ExampleLease     = "myapp-lock" // LEASE_NAME
	ExampleService   = "myapp-leader"
	SidecarContainer = "leader-elector"
	AppContainer     = "app"
	// The app's httpd serves the emptyDir mounted at /tmp on this port.
	appPort = 8081
)

// ContainerStatus is the status of the named container of p, init
// containers (native sidecars) included, or nil.
func ContainerStatus(p *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

// ExamplePodReady says whether p runs, is not being deleted, and is Ready
// with the sidecar and the app running.
func ExamplePodReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range []string{SidecarContainer, AppContainer} {
		s := ContainerStatus(p, c)
		if s == nil || !s.Ready || s.State.Running == nil {
			return false
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// WaitExamplePods waits until exactly n pods of the example Deployment in ns
// exist, all ready (ExamplePodReady), and returns them.
func (cp *ControlPlane) WaitExamplePods(ctx context.Context, ns string, n int, timeout time.Duration) ([]corev1.Pod, error) {
	var ready []corev1.Pod
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cp.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + ExampleApp})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		ready = ready[:0]
		var states []string
		for _, p := range list.Items {
			if ExamplePodReady(&p) {
				ready = append(ready, p)
			}
			states = append(states, p.Name+":"+string(p.Status.Phase))
		}
		last = strings.Join(states, " ")
		return len(ready) == n && len(list.Items) == n, nil
	})
	if err != nil {
		return nil, fmt.Errorf("not %d ready pods of %s/%s within %s: %s", n, ns, ExampleApp, timeout, last)
	}
	return ready, nil
}

// ExampleLeaseNow returns the example's Lease in ns.
func (cp *ControlPlane) ExampleLeaseNow(ctx context.Context, ns string) (*coordinationv1.Lease, error) {
	l, err := cp.Admin.CoordinationV1().Leases(ns).Get(ctx, ExampleLease, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("get Lease %s/%s: %w", ns, ExampleLease, err)
	}
	return l, nil
}

// Holder is the Lease's holder, or "".
func Holder(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// WaitLease polls the example's Lease every few milliseconds until cond
// holds, and returns it.
func (cp *ControlPlane) WaitLease(ctx context.Context, ns string, timeout time.Duration, what string, cond func(*coordinationv1.Lease) bool) (*coordinationv1.Lease, error) {
	var got *coordinationv1.Lease
	err := wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := cp.ExampleLeaseNow(ctx, ns)
		if err != nil {
			return false, nil //nolint:nilerr // keep polling through a transient error
		}
		got = l
		return cond(l), nil
	})
	if err != nil {
		return nil, fmt.Errorf("Lease %s/%s: not %s within %s", ns, ExampleLease, what, timeout)
	}
	return got, nil
}

// AppSeesStatusFile asks the example's app container, whose httpd serves
// the emptyDir at /tmp, whether it sees /tmp/leader_status, and what it
// reads there: what its `[ -f /tmp/leader_status ]` sees.
func AppSeesStatusFile(ctx context.Context, p *corev1.Pod) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://%s:%d/leader_status", p.Status.PodIP, appPort), nil)
	if err != nil {
		return false, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false, "", fmt.Errorf("ask the app of %s: %w", p.Name, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	switch resp.StatusCode {
	case http.StatusOK:
		return true, string(b), nil
	case http.StatusNotFound:
		return false, "", nil
	}
	return false, "", fmt.Errorf("ask the app of %s: %s", p.Name, resp.Status)
}

// KillContainer SIGKILLs every process of a container, as an OOM kill or a
// crash ends it, waits until they are gone, and returns when it sent the
// signal.
func (n *Node) KillContainer(ctx context.Context, containerID string) (time.Time, error) {
	pids, err := n.ContainerPIDs(containerID)
	if err != nil {
		return time.Time{}, err
	}
	if len(pids) == 0 {
		return time.Time{}, fmt.Errorf("container %s has no processes", containerID)
	}
	at := time.Now()
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return at, fmt.Errorf("kill process %d of container %s: %w", pid, containerID, err)
		}
	}
	err = wait.PollUntilContextTimeout(ctx, 5*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return at, fmt.Errorf("processes %v of container %s outlived SIGKILL", pids, containerID)
	}
	return at, nil
}

// SidecarStarted waits until the pod's running sidecar container has
// logged its start at or after since, read through the kubelet, and returns
// when. A restarted container's log is the kubelet's to serve only once it
// runs the new container, so one read right after a kill can still show the
// old one's.
func (cp *ControlPlane) SidecarStarted(ctx context.Context, ns, pod string, since time.Time, timeout time.Duration) (time.Time, error) {
	var at time.Time
	last := "no log read"
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		b, err := cp.Admin.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: SidecarContainer}).DoRaw(ctx)
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = "no start line"
		for _, line := range strings.Split(string(b), "\n") {
			if !strings.Contains(line, `msg="starting leader-elector"`) {
				continue
			}
			f := strings.Fields(line)
			t, err := time.Parse(time.RFC3339Nano, strings.TrimPrefix(f[0], "time="))
			if err != nil {
				continue
			}
			if t.Before(since) {
				last = "the last start line is from " + t.Format(time.RFC3339Nano)
				continue
			}
			at = t
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return time.Time{}, fmt.Errorf("the sidecar of %s/%s logged no start since %s within %s: %s",
			ns, pod, since.Format(time.RFC3339Nano), timeout, last)
	}
	return at, nil
}

// WaitRestarted waits until the kubelet reports that the pod's container
// was restarted since before was seen: a higher restartCount, another
// container ID, running. The kubelet's status manager publishes a restart
// some time after it happened (it batches status updates), so the count
// read once right after the restart's effect is seen may still be the old
// one. It returns the status that showed the restart.
func (cp *ControlPlane) WaitRestarted(ctx context.Context, ns, pod, container string, before *corev1.ContainerStatus, timeout time.Duration) (*corev1.ContainerStatus, error) {
	var got *corev1.ContainerStatus
	last := "no status read"
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := cp.Admin.CoreV1().Pods(ns).Get(ctx, pod, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		s := ContainerStatus(p, container)
		if s == nil {
			last = "no status of the container"
			return false, nil
		}
		last = fmt.Sprintf("restartCount %d, container %s, running %v", s.RestartCount, s.ContainerID, s.State.Running != nil)
		if s.RestartCount > before.RestartCount && s.ContainerID != before.ContainerID && s.State.Running != nil {
			got = s
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return nil, fmt.Errorf("the kubelet reported no restart of container %s of %s/%s within %s (before: restartCount %d, container %s); last seen: %s",
			container, ns, pod, timeout, before.RestartCount, before.ContainerID, last)
	}
	return got, nil
}

// WaitRoles waits until the live pods labelled app=app in ns carry the
// label role=leader on leader's pod and role=follower on every other: each
// sidecar patches its own pod's label after its status file, so the labels
// follow the file by an API round trip.
func (cp *ControlPlane) WaitRoles(ctx context.Context, ns, app, leader string, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cp.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		var wrong []string
		for _, p := range list.Items {
			if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
				continue
			}
			want := "follower"
			if p.Name == leader {
				want = "leader"
			}
			if got := p.Labels["role"]; got != want {
				wrong = append(wrong, fmt.Sprintf("%s has role=%q, want %q", p.Name, got, want))
			}
		}
		last = strings.Join(wrong, "; ")
		return len(wrong) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the role labels of the pods app=%s in %s, leader %s, not set within %s: %s", app, ns, leader, timeout, last)
	}
	return nil
}

// WaitPodGone waits until the pod is deleted, and returns its last status
// seen.
func (cp *ControlPlane) WaitPodGone(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	var last *corev1.Pod
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		p, err := cp.Admin.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err == nil {
			last = p
		}
		return false, nil
	})
	if err != nil {
		return last, fmt.Errorf("pod %s/%s not gone within %s", ns, name, timeout)
	}
	return last, nil
}

// DeleteExample deletes the example Deployment in ns and waits until its
// pods are gone, so that the kubelet stops them as in a cluster.
func (cp *ControlPlane) DeleteExample(ctx context.Context, ns string, timeout time.Duration) error {
	fg := metav1.DeletePropagationForeground
	if err := cp.Admin.AppsV1().Deployments(ns).Delete(ctx, ExampleApp, metav1.DeleteOptions{PropagationPolicy: &fg}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete Deployment %s/%s: %w", ns, ExampleApp, err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cp.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + ExampleApp})
		return err == nil && len(list.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("pods of %s/%s not gone within %s", ns, ExampleApp, timeout)
	}
	return nil
}
