package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// nodeHostname is the hostname every hostNetwork pod of one node has: the
// node's.
const nodeHostname = "node-1"

// startHostNetwork starts the sidecar of a new pod as in a hostNetwork pod on
// node nodeHostname: the node's hostname (and the test machine's network),
// its own /tmp as the emptyDir, and our variables alone, POD_NAME among them
// only with podName. There is no IDENTITY and no POD_UID: the identity alone
// must tell the replicas apart.
func (f *fleet) startHostNetwork(pod string, podName bool) *testcluster.Sidecar {
	f.t.Helper()
	f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	port := freePort(f.t)
	env := append(slices.Clone(timingEnv), "LEASE_NAME="+leaseName, "NAMESPACE="+f.ns, "HEALTH_PORT="+port)
	if podName {
		env = append(env, "POD_NAME="+pod)
	}
	s, err := testcluster.StartSidecar(testcluster.SidecarOptions{
		Binary: binary, Namespace: f.ns, Pod: pod, Kubeconfig: f.podKubeconfig(pod),
		Dir: filepath.Join(f.dir, pod), Env: env, AsStarted: true, HealthURL: "http://127.0.0.1:" + port,
		Hostname: nodeHostname,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.sidecars = append(f.sidecars, s)
	f.mu.Unlock()
	return s
}

// TestIdentityHostNetwork runs two replicas as two hostNetwork pods on one
// node: the same hostname, POD_NAME from the Downward API, no IDENTITY. Each
// takes its pod name as identity, so they never both lead (never two status
// files), and the leader writes its own POD_NAME into the status file and
// the Lease, before and after a handover. A third sidecar on the node without
// POD_NAME shows what the hostname alone would have given them.
func TestIdentityHostNetwork(t *testing.T) {
	f := newFleet(t)
	sampleLeaders(t, "status files", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	pods := []string{"hostnet-a", "hostnet-b"}
	for _, pod := range pods {
		f.startHostNetwork(pod, true)
	}

	// checkLeader checks that leader (found by waitLeader: its file alone,
	// the Lease naming it) wrote its POD_NAME, and that every running
	// sidecar names itself by its pod name and leader as the leader.
	checkLeader := func(leader string) {
		t.Helper()
		b, err := os.ReadFile(f.byPod(leader).StatusFile)
		if err != nil || string(b) != leader+"\n" {
			t.Errorf("status file of %s = %q (%v), want its POD_NAME %q and a newline", leader, b, err, leader)
		}
		for _, pod := range pods {
			s := f.byPod(pod)
			if s.Exited() {
				continue
			}
			waitStatus(t, s, 10*time.Second, "its pod name as identity and "+leader+" as leader", func(st map[string]any) bool {
				return st["identity"] == pod && st["leader"] == leader && st["is_leader"] == (pod == leader)
			})
		}
	}
	first := f.waitLeader(30*time.Second, false)
	checkLeader(first)

	// The same node without POD_NAME: the hostname is the identity, the
	// one both replicas above would have shared.
	bare := f.startHostNetwork("hostnet-bare", false)
	waitStatus(t, bare, 10*time.Second, "the node's hostname as identity", func(st map[string]any) bool {
		return st["identity"] == nodeHostname && st["leader"] == first && st["is_leader"] == false
	})
	if err := bare.Terminate(); err != nil {
		t.Fatal(err)
	}

	// A handover: the other replica leads and writes its own name.
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	second := f.waitLeader(20*time.Second, false)
	if second == first || !slices.Contains(pods, second) {
		t.Fatalf("%s leads after %s was terminated, want the other of %v", second, first, pods)
	}
	checkLeader(second)
}

// TestTwinProcessesWithOneUID runs two sidecars with one identity and one
// POD_UID, as two electors in one pod, or a manifest that sets IDENTITY and
// POD_UID literally, would: each its own status file. The second resumes
// the term it finds at its start, as a restarted sidecar does (at its start
// it cannot tell a live twin from its own dead predecessor), and the first,
// seeing its term renewed under another process's key, steps down. As the
// docs/design.md states, they overlap only until the first one's watch shows the
// other's write (a watch event, or its next renew's 409 a RETRY_PERIOD
// later): one interval of at most a RETRY_PERIOD after the second starts,
// never again; one leader after it, and the survivor leads once the other
// is killed.
func TestTwinProcessesWithOneUID(t *testing.T) {
	f := newFleet(t)
	files := sampleLeaders(t, "status files", func(context.Context) ([]string, error) { return f.fileHolders(), nil })
	f.addPod("twin", testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	env := []string{"POD_NAME=twin", "IDENTITY=twin", "POD_UID=" + f.podUID("twin")}
	kubeconfig := f.podKubeconfig("twin")
	// one waits until exactly one twin has its file, and returns it.
	one := func(what string) string {
		t.Helper()
		var files []string
		if !eventually(10*time.Second, func() bool { files = f.fileHolders(); return len(files) == 1 }) {
			t.Fatalf("%s: status files %v, want one", what, files)
		}
		return files[0]
	}
	f.start("twin-a", kubeconfig, env...)
	if got := one("the first twin alone"); got != "twin-a" {
		t.Fatalf("leader %s, want twin-a", got)
	}
	files.tolerateOne(time.Now(), retryPeriod)
	f.start("twin-b", kubeconfig, env...)
	waitStatus(t, f.byPod("twin-b"), 10*time.Second, "running", func(map[string]any) bool { return true })
	// Long enough for either to have renewed several times on top of the
	// other's term.
	time.Sleep(3 * leaseDuration)
	leader := one("both twins running")
	for _, pod := range []string{"twin-a", "twin-b"} {
		waitStatus(t, f.byPod(pod), 10*time.Second, fmt.Sprintf("is_leader %v", pod == leader), func(st map[string]any) bool {
			return st["is_leader"] == (pod == leader)
		})
	}
	if err := f.byPod(leader).Kill(); err != nil {
		t.Fatal(err)
	}
	other := map[string]string{"twin-a": "twin-b", "twin-b": "twin-a"}[leader]
	if !eventually(leaseDuration+renewDeadline+5*time.Second, func() bool { return f.byPod(other).HasStatusFile() }) {
		t.Fatalf("%s does not lead after its twin %s was killed", other, leader)
	}
}
