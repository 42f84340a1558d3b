package testcluster

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var cp *ControlPlane

// helperEnv makes the test binary start a control plane, print its PIDs and
// directory, and wait to be killed (see TestKilledRunLeavesNothing).
const helperEnv = "TESTCLUSTER_HELPER_HOLD"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		holdForKill()
		return
	}
	os.Exit(Main(m, &cp))
}

func holdForKill() {
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	for _, p := range c.Processes() {
		fmt.Println("PID", p.Pid())
	}
	fmt.Println("DIR", c.Dir)
	select {} // until killed
}

func TestControlPlaneServesTheBuiltVersion(t *testing.T) {
	v, err := cp.Admin.Discovery().ServerVersion()
	if err != nil {
		t.Fatalf("server version: %v", err)
	}
	if v.GitVersion != "v1.37.2" {
		t.Errorf("server version = %q, want v1.37.2", v.GitVersion)
	}
}

// TestRBACDeniesWhatDeployDoesNotGrant runs a client with the token of the
// ServiceAccount from deploy/ and checks the grants both ways.
func TestRBACDeniesWhatDeployDoesNotGrant(t *testing.T) {
	ctx := t.Context()
	ns := Namespace(t, cp)
	if err := cp.ApplyManifests(ctx, ns, filepath.Join(RepoRoot(), "deploy", "rbac", "rbac.yaml")); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.CreatePod(ctx, ns, "replica-0", PodOptions{Labels: map[string]string{"app": "demo"}}); err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := cp.ServiceAccountKubeconfig(ctx, ns, ServiceAccount, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	sa := kubernetes.NewForConfigOrDie(cfg)
	leases := sa.CoordinationV1().Leases(ns)
	lease := func(name string) *coordinationv1.Lease {
		return &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}

	allowed := []struct {
		name string
		do   func() error
	}{
		{"create the Lease", func() error { _, err := leases.Create(ctx, lease("myapp-lock"), metav1.CreateOptions{}); return err }},
		{"get the Lease", func() error { _, err := leases.Get(ctx, "myapp-lock", metav1.GetOptions{}); return err }},
		{"watch the Lease by name", func() error {
			w, err := leases.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=myapp-lock"})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"list the Lease by name", func() error {
			_, err := leases.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=myapp-lock"})
			return err
		}},
		{"get the own pod", func() error { _, err := sa.CoreV1().Pods(ns).Get(ctx, "replica-0", metav1.GetOptions{}); return err }},
		{"list pods", func() error { _, err := sa.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"watch pods by label", func() error {
			w, err := sa.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=demo"})
			if err == nil {
				w.Stop()
			}
			return err
		}},
		{"patch a pod label", func() error {
			_, err := sa.CoreV1().Pods(ns).Patch(ctx, "replica-0", types.MergePatchType, []byte(`{"metadata":{"labels":{"role":"follower"}}}`), metav1.PatchOptions{})
			return err
		}},
	}
	for _, tc := range allowed {
		if err := tc.do(); err != nil {
			t.Errorf("%s: want allowed, got %v", tc.name, err)
		}
	}

	denied := []struct {
		name string
		do   func() error
	}{
		{"get another Lease", func() error { _, err := leases.Get(ctx, "other-lock", metav1.GetOptions{}); return err }},
		{"list all Leases", func() error { _, err := leases.List(ctx, metav1.ListOptions{}); return err }},
		{"list another Lease by name", func() error {
			_, err := leases.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=other-lock"})
			return err
		}},
		{"patch the Lease", func() error {
			_, err := leases.Patch(ctx, "myapp-lock", types.MergePatchType, []byte(`{"metadata":{"labels":{"a":"b"}}}`), metav1.PatchOptions{})
			return err
		}},
		{"delete the Lease", func() error { return leases.Delete(ctx, "myapp-lock", metav1.DeleteOptions{}) }},
		{"read Secrets", func() error { _, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); return err }},
		{"delete a pod", func() error { return sa.CoreV1().Pods(ns).Delete(ctx, "replica-0", metav1.DeleteOptions{}) }},
		{"create a pod", func() error {
			_, err := sa.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{})
			return err
		}},
		{"list pods in another namespace", func() error { _, err := sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); return err }},
		{"watch pods in another namespace", func() error {
			w, err := sa.CoreV1().Pods("default").Watch(ctx, metav1.ListOptions{})
			if err == nil {
				w.Stop()
			}
			return err
		}},
	}
	for _, tc := range denied {
		if err := tc.do(); !apierrors.IsForbidden(err) {
			t.Errorf("%s: want 403 Forbidden, got %v", tc.name, err)
		}
	}
}

// TestStopLeavesNothing starts a second control plane and checks that Stop
// ends every process it started and removes its directory.
func TestStopLeavesNothing(t *testing.T) {
	other, err := Start(t.Context(), Options{Log: testWriter{t}})
	if err != nil {
		t.Fatal(err)
	}
	procs := other.Processes()
	if len(procs) != 2 {
		t.Errorf("running processes = %d, want 2 (etcd, kube-apiserver)", len(procs))
	}
	if err := other.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	for _, p := range procs {
		if alive(p.Pid()) {
			t.Errorf("%s (pid %d) still runs after Stop", p.Name, p.Pid())
		}
	}
	if _, err := os.Stat(other.Dir); !os.IsNotExist(err) {
		t.Errorf("directory %s still exists after Stop (stat: %v)", other.Dir, err)
	}
}

// TestKilledRunLeavesNothing kills a test process that runs a control plane
// with SIGKILL, which runs no cleanup at all, and checks that its children
// die with it and that the next TempDir removes its directory.
func TestKilledRunLeavesNothing(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var pids []int
	var dir string
	sc := bufio.NewScanner(out)
	for dir == "" && sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 2 && f[0] == "PID":
			pid, _ := strconv.Atoi(f[1])
			pids = append(pids, pid)
		case len(f) == 2 && f[0] == "DIR":
			dir = f[1]
		case len(f) > 0 && f[0] == "ERROR":
			t.Fatalf("helper: %s", sc.Text())
		}
	}
	if len(pids) != 2 || dir == "" {
		t.Fatalf("helper reported pids %v and dir %q", pids, dir)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for alive(pid) && !zombieOrGone(pid) && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) && !zombieOrGone(pid) {
			t.Errorf("pid %d outlived its killed parent", pid)
		}
	}
	d, err := TempDir("probe")
	if err != nil {
		t.Fatal(err)
	}
	_ = os.RemoveAll(d)
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("directory %s of the killed run was not removed by the next TempDir (stat: %v)", dir, err)
	}
}

// zombieOrGone reports whether pid has exited (a zombie waits only for init
// to reap it).
func zombieOrGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && i+2 < len(s) && s[i+2] == 'Z'
}
