package leasestatus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/leader-elector/leader-elector/internal/commands/cli"
)

// kubeconfigWithNamespace writes a kubeconfig whose context names ns.
func kubeconfigWithNamespace(t *testing.T, ns string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubeconfig")
	cfg := `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts:
  - {name: x, context: {cluster: c, user: u, namespace: ` + ns + `}}
  - {name: other, context: {cluster: c, user: u, namespace: custom}}
current-context: x
`
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCommand(t *testing.T) {
	ctxKubeconfig := kubeconfigWithNamespace(t, "from-context")
	// A home directory whose ~/.kube/config is that kubeconfig.
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".kube"), 0o755); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(ctxKubeconfig); err != nil || os.WriteFile(filepath.Join(home, ".kube", "config"), b, 0o600) != nil {
		t.Fatalf("copy the kubeconfig to %s: %v", home, err)
	}
	objects := func() []runtime.Object {
		p0, p1 := pod("pod-0", map[string]string{"role": "leader", "app": "web"}), pod("pod-1", map[string]string{"role": "follower", "app": "web"})
		p0.Namespace, p1.Namespace = "prod", "prod"
		other := pod("other-0", map[string]string{"role": "leader", "app": "db"})
		other.Namespace = "prod"
		custom := pod("pod-0", map[string]string{"example.com/role": "leader"})
		custom.Namespace = "custom"
		l := lease("pod-0", 75*time.Second, 400*time.Millisecond, 15, 2)
		l2 := lease("pod-0", 75*time.Second, 400*time.Millisecond, 15, 2)
		l2.Namespace = "custom"
		l3 := lease("pod-0", 75*time.Second, 400*time.Millisecond, 15, 2)
		l3.Namespace = "from-context"
		return []runtime.Object{l, l2, l3, &p0, &p1, &other, &custom}
	}
	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		forbidden  bool
		connectErr bool // Connect fails as kubeclient.Connect does without kubeconfig and cluster
		wantCode   int
		wantNS     string // namespace Connect got
		wantStdout string
		wantStderr string // one line
	}{
		{name: "two pods say leader in the namespace", args: []string{"-n", "prod", "myapp-lock"}, wantCode: ExitDisagree, wantNS: "prod",
			wantStdout: "PROBLEM: 2 pods are labelled role=leader: other-0, pod-0"},
		{name: "a selector narrows to the release", args: []string{"myapp-lock", "-n", "prod", "-l", "app=web"}, wantCode: 0, wantNS: "prod",
			wantStdout: "OK: pod-0 leads"},
		{name: "json", args: []string{"--namespace=prod", "--selector", "app=web", "-o", "json", "myapp-lock"}, wantCode: 0, wantNS: "prod",
			wantStdout: `"holder": "pod-0"`},
		{name: "no Lease", args: []string{"-n", "prod", "missing-lock"}, wantCode: ExitNoLeader, wantNS: "prod",
			wantStdout: "PROBLEM: the Lease prod/missing-lock does not exist"},
		{name: "label key from ROLE_LABEL_KEY", args: []string{"-n", "custom", "myapp-lock"}, env: map[string]string{"ROLE_LABEL_KEY": "example.com/role"},
			wantCode: 0, wantNS: "custom", wantStdout: "LABELLED EXAMPLE.COM/ROLE=LEADER"},
		{name: "--label-key wins", args: []string{"-n", "custom", "--label-key", "role", "myapp-lock"}, env: map[string]string{"ROLE_LABEL_KEY": "example.com/role"},
			wantCode: 0, wantNS: "custom", wantStdout: "(no pod carries the role label)"},
		{name: "namespace from the kubeconfig's context", args: []string{"myapp-lock"}, env: map[string]string{"KUBECONFIG": ctxKubeconfig},
			wantCode: 0, wantNS: "from-context"},
		{name: "--kubeconfig", args: []string{"--kubeconfig", ctxKubeconfig, "myapp-lock"}, wantCode: 0, wantNS: "from-context"},
		{name: "--context picks another context's namespace, as kubectl", args: []string{"--kubeconfig", ctxKubeconfig, "--context", "other", "myapp-lock"}, wantCode: 0, wantNS: "custom"},
		{name: "--context that the kubeconfig lacks", args: []string{"--kubeconfig", ctxKubeconfig, "--context", "nope", "myapp-lock"}, wantCode: cli.ExitFailure,
			wantStderr: `leader-elector status: find the namespace in KUBECONFIG=`},
		{name: "~/.kube/config outside a cluster, as kubectl", args: []string{"myapp-lock"}, env: map[string]string{"HOME": home},
			wantCode: 0, wantNS: "from-context"},
		{name: "in a cluster, not ~/.kube/config", args: []string{"myapp-lock"}, env: map[string]string{"HOME": home, "KUBERNETES_SERVICE_HOST": "10.0.0.1"},
			wantCode: ExitNoLeader, wantNS: "default", wantStdout: "does not exist"},
		{name: "forbidden", args: []string{"-n", "prod", "myapp-lock"}, forbidden: true, wantCode: cli.ExitFailure, wantNS: "prod",
			wantStderr: `leader-elector status: read Lease prod/myapp-lock: leases.coordination.k8s.io "myapp-lock" is forbidden`},
		{name: "no argument", args: []string{"-n", "prod"}, wantCode: 2, wantStderr: "leader-elector status: want one argument, the Lease's name; got 0"},
		{name: "two arguments", args: []string{"a", "b"}, wantCode: 2, wantStderr: "got 2"},
		{name: "bad output", args: []string{"-o", "yaml", "myapp-lock"}, wantCode: 2, wantStderr: `leader-elector status: -o="yaml": must be table or json`},
		{name: "bad lease name", args: []string{"My_Lock"}, wantCode: 2, wantStderr: `leader-elector status: LEASE="My_Lock": must be a Lease name`},
		{name: "bad namespace", args: []string{"-n", "Prod!", "myapp-lock"}, wantCode: 2, wantStderr: `leader-elector status: --namespace="Prod!": must be a namespace name`},
		{name: "bad selector", args: []string{"-l", "app in (", "myapp-lock"}, wantCode: 2, wantStderr: `leader-elector status: selector "app in ("`},
		{name: "bad label key", args: []string{"--label-key", "-role", "myapp-lock"}, wantCode: 2, wantStderr: `leader-elector status: label key "-role"`},
		{name: "bad timeout", args: []string{"--timeout", "forever", "myapp-lock"}, wantCode: 2, wantStderr: `invalid value "forever" for flag -timeout`},
		{name: "neither kubeconfig nor cluster", args: []string{"myapp-lock"}, connectErr: true, wantCode: cli.ExitFailure, wantNS: "default",
			wantStderr: "leader-elector status: no KUBECONFIG set and not running in a cluster"},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantStdout: "4 a live leader, but the role labels disagree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client := fake.NewClientset(objects()...)
			if tt.forbidden {
				client.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
					return true, nil, apierrors.NewForbidden(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, "myapp-lock", nil)
				})
			}
			var gotNS, gotContext string
			var stdout, stderr bytes.Buffer
			c := Command{
				Lookup: func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok },
				Stdout: &stdout, Stderr: &stderr, Clock: clocktesting.NewFakePassiveClock(now),
				Connect: func(_, kubeContext, ns string) (Leases, Pods, error) {
					gotNS, gotContext = ns, kubeContext
					if tt.connectErr {
						return nil, nil, errors.New("no KUBECONFIG set and not running in a cluster: unable to load in-cluster configuration")
					}
					return client.CoordinationV1().Leases(ns), client.CoreV1().Pods(ns), nil
				},
			}
			code := c.Run(context.Background(), tt.args)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, stdout.String(), stderr.String())
			}
			if gotNS != tt.wantNS {
				t.Errorf("namespace %q, want %q", gotNS, tt.wantNS)
			}
			if i := slices.Index(tt.args, "--context"); i >= 0 && gotNS != "" && gotContext != tt.args[i+1] {
				t.Errorf("connected in context %q, want %q", gotContext, tt.args[i+1])
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantStdout, stdout.String())
			}
			switch {
			case tt.wantStderr == "" && stderr.Len() > 0:
				t.Errorf("stderr = %q, want it empty", stderr.String())
			case tt.wantStderr != "" && (!strings.Contains(stderr.String(), tt.wantStderr) || strings.Count(stderr.String(), "\n") != 1):
				t.Errorf("stderr = %q, want one line with %q", stderr.String(), tt.wantStderr)
			}
			if strings.Contains(strings.Join(tt.args, " "), "json") && code != 2 {
				var r Report
				if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.ExitCode != code {
					t.Errorf("-o json: %v, exit_code %d, want the report with exit code %d:\n%s", err, r.ExitCode, code, stdout.String())
				}
			}
		})
	}
}

// TestWaitReadsUntilALiveLeader: --wait reads every half second until the
// Lease names a live holder (here: created after two reads), then reports;
// on a fake clock, with the reads counted.
func TestWaitReadsUntilALiveLeader(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC))
	client := fake.NewClientset()
	reads := 0
	client.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		reads++
		return false, nil, nil
	})
	var stdout, stderr bytes.Buffer
	c := Command{
		Lookup: func(string) (string, bool) { return "", false },
		Stdout: &stdout, Stderr: &stderr, Clock: clk,
		Connect: func(_, _, ns string) (Leases, Pods, error) {
			return client.CoordinationV1().Leases(ns), client.CoreV1().Pods(ns), nil
		},
		Name: "kubectl leader await",
	}
	done := make(chan int)
	go func() {
		done <- c.Run(context.Background(), []string{"-n", "prod", "--wait", "--timeout", "0", "myapp-lock"})
	}()
	for want := 1; want <= 2; want++ {
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		if reads != want {
			t.Fatalf("%d reads before wait %d, want %d", reads, want, want)
		}
		if want == 2 {
			l := lease("pod-0", time.Second, 0, 15, 1)
			l.Namespace = "prod"
			l.Spec.RenewTime = &metav1.MicroTime{Time: clk.Now()}
			if _, err := client.CoordinationV1().Leases("prod").Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		clk.Step(waitInterval)
	}
	if code := <-done; code != 0 || !strings.Contains(stdout.String(), "OK: pod-0 leads") {
		t.Errorf("exit code %d, stdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
}

// TestWaitGivesUpAtTheTimeout: no leader within --timeout is exit code 3,
// with the last report on stderr.
func TestWaitGivesUpAtTheTimeout(t *testing.T) {
	client := fake.NewClientset()
	var stdout, stderr bytes.Buffer
	c := Command{
		Lookup: func(string) (string, bool) { return "", false },
		Stdout: &stdout, Stderr: &stderr, Clock: clocktesting.NewFakeClock(time.Now()),
		Connect: func(_, _, ns string) (Leases, Pods, error) {
			return client.CoordinationV1().Leases(ns), client.CoreV1().Pods(ns), nil
		},
	}
	if code := c.Run(context.Background(), []string{"-n", "prod", "--wait", "--timeout", "50ms", "myapp-lock"}); code != ExitNoLeader {
		t.Errorf("exit code %d, want %d", code, ExitNoLeader)
	}
	if !strings.Contains(stderr.String(), "leader-elector status: no live leader of Lease prod/myapp-lock within 50ms") {
		t.Errorf("stderr:\n%s", stderr.String())
	}
}
