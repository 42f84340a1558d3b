package pods

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// holdEnv makes the test binary start a control plane and a node with one
// running pod, print what it made, and wait to be killed (see
// TestKilledRunLeavesNoNode).
const holdEnv = "PODS_HELPER_HOLD"

func holdForKill() {
	fail := func(err error) {
		fmt.Println("ERROR", strings.ReplaceAll(err.Error(), "\n", " "))
		os.Exit(1)
	}
	ctx := context.Background()
	c, err := testcluster.Start(ctx, testcluster.Options{})
	if err != nil {
		fail(err)
	}
	n, err := c.StartNode(ctx, testcluster.NodeOptions{})
	if err != nil {
		fail(err)
	}
	ns, err := c.CreateNamespace(ctx, "hold")
	if err != nil {
		fail(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "sleeper"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "sleep", Image: n.Images.App.Ref, ImagePullPolicy: corev1.PullNever,
			Command:      []string{"/bin/sh", "-c", "sleep 3600"},
			VolumeMounts: []corev1.VolumeMount{{Name: "tmp", MountPath: "/tmp"}},
		}}, Volumes: []corev1.Volume{{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}}}},
	}
	if _, err := c.Admin.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		fail(err)
	}
	var id string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := c.Admin.CoreV1().Pods(ns).Get(ctx, "sleeper", metav1.GetOptions{})
		if err != nil || len(p.Status.ContainerStatuses) == 0 || p.Status.ContainerStatuses[0].State.Running == nil {
			return false, nil
		}
		id = p.Status.ContainerStatuses[0].ContainerID
		return true, nil
	})
	if err != nil {
		fail(fmt.Errorf("the pod did not run: %w", err))
	}
	pids, err := n.ContainerPIDs(id)
	if err != nil {
		fail(err)
	}
	for _, pid := range pids {
		fmt.Println("PID", pid)
	}
	fmt.Println("NODE", n.Dir, n.Cgroup, strings.TrimPrefix(n.Name, "node-"))
	select {} // until killed
}

// TestKilledRunLeavesNoNode SIGKILLs a test process that runs a node with a
// pod, and checks that the node's reaper removed everything: the container,
// containerd's shims, the mounts, the cgroups, the bridge and the directory.
// Containers are no children of the test process, so only the reaper can.
func TestKilledRunLeavesNoNode(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), holdEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var pids []int
	var dir, cgroup string
	sc := bufio.NewScanner(out)
	for dir == "" && sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "PID":
			pid, _ := strconv.Atoi(f[1])
			pids = append(pids, pid)
		case len(f) == 4 && f[0] == "NODE":
			dir, cgroup = f[1], f[2]
		case len(f) > 0 && f[0] == "ERROR":
			t.Fatalf("helper: %s", sc.Text())
		}
	}
	if len(pids) == 0 || dir == "" {
		t.Fatalf("helper reported pids %v and node %q", pids, dir)
	}
	bridges := nodeBridges(t, dir)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	err = wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		_, err := os.Stat(dir)
		return os.IsNotExist(err), nil
	})
	if err != nil {
		t.Fatalf("the killed run's node directory %s is still there after 60s", dir)
	}
	for _, pid := range pids {
		if !exited(pid) {
			t.Errorf("the container's process %d outlived the killed test process", pid)
		}
	}
	if _, err := os.Stat("/sys/fs/cgroup/pids/" + cgroup); !os.IsNotExist(err) {
		t.Errorf("cgroup %s is still there (stat: %v)", cgroup, err)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(mounts), dir) {
		t.Errorf("mounts under %s are still there", dir)
	}
	for _, b := range bridges {
		if _, err := net.InterfaceByName(b); err == nil {
			t.Errorf("bridge %s is still there", b)
		}
		// The CNI plugins' cache of the pod's sandbox, named by network.
		cached, _ := filepath.Glob("/var/lib/cni/results/" + b + "-*")
		if len(cached) > 0 {
			t.Errorf("the CNI result cache still holds %v", cached)
		}
	}
	// The kubelet's links to the pod's logs.
	links, _ := os.ReadDir("/var/log/containers")
	for _, l := range links {
		if target, err := os.Readlink("/var/log/containers/" + l.Name()); err == nil && strings.HasPrefix(target, dir+"/") {
			t.Errorf("log link %s into the node is still there", l.Name())
		}
	}
	// The killed run's control plane directory goes with the next TempDir,
	// as after any killed run.
	d, err := testcluster.TempDir("probe")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(d)
}

// nodeBridges reads the bridge's name from the node's marker file.
func nodeBridges(t *testing.T, dir string) []string {
	b, err := os.ReadFile(dir + "/node.cleanup")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[1:]
}

// exited reports whether pid has ended, within a second: gone, or a zombie
// that only waits for init to reap it.
func exited(pid int) bool {
	deadline := time.Now().Add(time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || syscall.Kill(pid, 0) != nil {
			return true
		}
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) && s[i+2] == 'Z' {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
}
