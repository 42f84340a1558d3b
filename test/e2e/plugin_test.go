package e2e

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// TestKubectlPlugin runs the release binary under the name kubectl-leader,
// as kubectl runs a plugin it finds on PATH, with kubectl's conventions: no
// KUBECONFIG, ~/.kube/config with two contexts, --context picking the one
// whose namespace holds the election. Under that name it never starts a
// sidecar.
func TestKubectlPlugin(t *testing.T) {
	f := newFleet(t)
	f.add(2)
	leader := f.waitLeader(30*time.Second, false)
	reader := statusReader(t, f.ns, f.dir)

	// ~/.kube/config: the reader's credentials in two contexts, the
	// current one in namespace default, "team" in the fleet's.
	cfg, err := clientcmd.LoadFromFile(reader)
	if err != nil {
		t.Fatal(err)
	}
	base := cfg.Contexts[cfg.CurrentContext]
	cfg.Contexts = map[string]*clientcmdapi.Context{
		"elsewhere": {Cluster: base.Cluster, AuthInfo: base.AuthInfo, Namespace: "default"},
		"team":      {Cluster: base.Cluster, AuthInfo: base.AuthInfo, Namespace: f.ns},
	}
	cfg.CurrentContext = "elsewhere"
	home := t.TempDir()
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(home, ".kube", "config")); err != nil {
		t.Fatal(err)
	}
	plugin := filepath.Join(t.TempDir(), "kubectl-leader")
	if err := os.Symlink(binary, plugin); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (int, string, string) {
		cmd := exec.CommandContext(t.Context(), plugin, args...)
		cmd.Env = []string{"HOME=" + home, "PATH=" + os.Getenv("PATH")}
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errb.String()
	}
	for _, tc := range []struct {
		name       string
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{"await in the --context's namespace", []string{"await", leaseName, "--context", "team", "--timeout", "30s"}, 0, "OK: " + leader + " leads", ""},
		{"status in the --context's namespace", []string{"status", "--context=team", leaseName}, 0, "OK: " + leader + " leads", ""},
		{"-n beats the context's namespace", []string{"status", "-n", f.ns, leaseName}, 0, "OK: " + leader + " leads", ""},
		// The reader may read the fleet's namespace alone: refused in the
		// current context's, which the error names.
		{"the current context's namespace", []string{"status", leaseName}, 1, "", `cannot get resource "leases" in API group "coordination.k8s.io" in the namespace "default"`},
		{"a context the kubeconfig lacks", []string{"status", "--context", "nope", leaseName}, 1, "", "context was not found for specified context: nope"},
		{"resign needs the Lease", []string{"resign"}, 2, "", "kubectl leader resign: want one argument, the Lease's name"},
		{"no command is usage, not a sidecar", nil, 2, "", "kubectl leader status LEASE"},
		{"version", []string{"version"}, 0, "leader-elector ", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := run(tc.args...)
			if code != tc.wantCode || !strings.Contains(stdout, tc.wantStdout) || !strings.Contains(stderr, tc.wantStderr) {
				t.Errorf("kubectl-leader %s: exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout with %q, stderr with %q",
					strings.Join(tc.args, " "), code, stdout, stderr, tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
}
