package testcluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// What users do to the example's pods, for the real-pod tests and the
// bench: scale, evict under the PodDisruptionBudget, roll out, and watch
// every pod's status file on the node.

// ScaleExample sets the example Deployment's replicas.
func (cp *ControlPlane) ScaleExample(ctx context.Context, ns string, n int) error {
	patch := fmt.Appendf(nil, `{"spec":{"replicas":%d}}`, n)
	if _, err := cp.Admin.AppsV1().Deployments(ns).Patch(ctx, ExampleApp, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("scale %s/%s to %d: %w", ns, ExampleApp, n, err)
	}
	return nil
}

// RemoveFirstOnScaleDown gives pod the lowest deletion cost, so that the
// ReplicaSet controller removes it first when the example scales down.
func (cp *ControlPlane) RemoveFirstOnScaleDown(ctx context.Context, ns, pod string) error {
	cost := []byte(`{"metadata":{"annotations":{"controller.kubernetes.io/pod-deletion-cost":"-1000"}}}`)
	if _, err := cp.Admin.CoreV1().Pods(ns).Patch(ctx, pod, types.MergePatchType, cost, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("set the deletion cost of %s/%s: %w", ns, pod, err)
	}
	return nil
}

// RestartExampleRollout does what kubectl rollout restart does to the
// example Deployment.
func (cp *ControlPlane) RestartExampleRollout(ctx context.Context, ns string) error {
	restart := fmt.Appendf(nil, `{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":%q}}}}}`, time.Now().Format(time.RFC3339Nano))
	if _, err := cp.Admin.AppsV1().Deployments(ns).Patch(ctx, ExampleApp, types.StrategicMergePatchType, restart, metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("restart the rollout of %s/%s: %w", ns, ExampleApp, err)
	}
	return nil
}

// WaitRolledOut waits until the example runs n pods, all Ready and none of
// the revision oldHash (its pod-template-hash).
func (cp *ControlPlane) WaitRolledOut(ctx context.Context, ns, oldHash string, n int, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		list, err := cp.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + ExampleApp})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		fresh := 0
		for _, p := range list.Items {
			if p.Labels["pod-template-hash"] != oldHash && ExamplePodReady(&p) {
				fresh++
			}
		}
		last = fmt.Sprintf("%d pods, %d of the new revision Ready", len(list.Items), fresh)
		return len(list.Items) == n && fresh == n, nil
	})
	if err != nil {
		return fmt.Errorf("the rollout of %s/%s did not finish within %s: %s", ns, ExampleApp, timeout, last)
	}
	return nil
}

// WaitDisruptionsAllowed waits until the example's PodDisruptionBudget
// allows n disruptions, as the Eviction API reads it.
func (cp *ControlPlane) WaitDisruptionsAllowed(ctx context.Context, ns string, n int32, timeout time.Duration) error {
	var last string
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		pdb, err := cp.Admin.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, ExampleApp, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		last = fmt.Sprintf("%+v", pdb.Status)
		return pdb.Status.ObservedGeneration == pdb.Generation && pdb.Status.DisruptionsAllowed == n, nil
	})
	if err != nil {
		return fmt.Errorf("the PodDisruptionBudget %s/%s does not allow %d disruptions within %s: %s", ns, ExampleApp, n, timeout, last)
	}
	return nil
}

// StatusFiles returns the status file, on the node, of every pod of the
// example in ns, by pod, as last listed: a goroutine lists the pods every
// 50 ms until ctx ends, so that a caller sampling the files never waits for
// a list.
func (n *Node) StatusFiles(ctx context.Context, ns string) func() map[string]string {
	var mu sync.Mutex
	files := map[string]string{}
	list := func() {
		l, err := n.cp.Admin.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + ExampleApp})
		if err != nil {
			return
		}
		m := map[string]string{}
		for _, p := range l.Items {
			m[p.Name] = filepath.Join(n.EmptyDirPath(p.UID, StatusVolume(&p)), "leader_status")
		}
		mu.Lock()
		files = m
		mu.Unlock()
	}
	list()
	go func() {
		for ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
			list()
		}
	}()
	return func() map[string]string {
		mu.Lock()
		defer mu.Unlock()
		return files
	}
}

// StatusVolume is the volume the pod's sidecar mounts at /tmp, where it
// writes the status file: "tmp" in deploy/example.yaml,
// "leader-elector-status" from deploy/components/sidecar.
func StatusVolume(p *corev1.Pod) string {
	for _, c := range p.Spec.InitContainers {
		if c.Name != SidecarContainer {
			continue
		}
		for _, m := range c.VolumeMounts {
			if m.MountPath == "/tmp" {
				return m.Name
			}
		}
	}
	return "tmp"
}

// Present returns the names of files whose path exists.
func Present(files map[string]string) []string {
	var seen []string
	for name, f := range files {
		if _, err := os.Stat(f); err == nil {
			seen = append(seen, name)
		}
	}
	return seen
}
