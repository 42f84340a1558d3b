package kubectlleader

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestMain dispatches without touching an API server: the commands that
// need none, and the usage errors. (status and await against the real API
// server: test/e2e/plugin_test.go.)
func TestMainDispatch(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{nil, 2, "", "kubectl leader status LEASE"},
		{[]string{"--help"}, 0, "kubectl leader await LEASE", ""},
		{[]string{"help"}, 0, "kubectl leader status LEASE", ""},
		{[]string{"version"}, 0, "leader-elector v1.2.3", ""},
		{[]string{"--version"}, 0, "leader-elector v1.2.3", ""},
		{[]string{"resign", "--to", "pod-1"}, 2, "", "kubectl leader resign: want one argument, the Lease's name; got 0"},
		{[]string{"resign", "My_Lock"}, 2, "", `kubectl leader resign: LEASE="My_Lock": must be a Lease name`},
		{[]string{"resign", "-n", "Prod!", "lock"}, 2, "", `kubectl leader resign: --namespace="Prod!": must be a namespace name`},
		{[]string{"resign", "--container", "", "lock"}, 2, "", `kubectl leader resign: --container="": must be a container name`},
		{[]string{"elect"}, 2, "", `kubectl leader: unknown command "elect"`},
		{[]string{"status"}, 2, "", "kubectl leader status: want one argument, the Lease's name; got 0"},
		{[]string{"status", "--help"}, 0, "Usage: kubectl leader status [--namespace NS]", ""},
		{[]string{"await", "--help"}, 0, "Usage: kubectl leader await [--namespace NS]", ""},
		{[]string{"await", "-o", "yaml", "lock"}, 2, "", `kubectl leader await: -o="yaml": must be table or json`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			lookup := func(string) (string, bool) { return "", false }
			code := Main(context.Background(), tc.args, lookup, &stdout, &stderr, "test", "leader-elector v1.2.3")
			if code != tc.wantCode || !strings.Contains(stdout.String(), tc.wantStdout) || !strings.Contains(stderr.String(), tc.wantStderr) {
				t.Errorf("exit %d, stdout:\n%s\nstderr:\n%s\nwant exit %d, stdout with %q, stderr with %q", code, stdout.String(), stderr.String(), tc.wantCode, tc.wantStdout, tc.wantStderr)
			}
		})
	}
}
