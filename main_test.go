package main

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/internal/config"
)

// TestReleaseBuildIsStaticAndStarts builds with `make build`, the target the
// Dockerfile's build stage runs, and checks the binary is static (it runs on
// distroless/static) and starts.
func TestReleaseBuildIsStaticAndStarts(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"make build VERSION=${VERSION} COMMIT=${COMMIT} DATE=${DATE}", "FROM --platform=$BUILDPLATFORM", "FROM gcr.io/distroless/static-debian12:nonroot", "USER 65532:65532", `ENTRYPOINT ["/leader-elector"]`} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("make", "build", "BIN="+dir, "VERSION=v9.8.7-test", "COMMIT=0123abc", "DATE=2026-12-07T08:00:00Z")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, out)
	}
	bin := filepath.Join(dir, "leader-elector")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("the release binary is dynamically linked (program header %s)", p.Type)
		}
	}
	if f.Section(".symtab") != nil {
		t.Errorf("the release binary keeps its symbol table; -s -w strips it")
	}
	want := fmt.Sprintf("leader-elector v9.8.7-test commit=0123abc date=2026-12-07T08:00:00Z go=%s platform=%s/%s", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, err := exec.Command(bin, args...).Output()
		if err != nil || strings.TrimSpace(string(out)) != want {
			t.Errorf("%s = %q (%v), want the stamped %q", args[0], out, err, want)
		}
	}
	out, err := exec.Command(bin, "--help").Output()
	if err != nil || !strings.Contains(string(out), "LEASE_NAME") {
		t.Errorf("--help = %q (%v), want the variables", out, err)
	}
}

// TestRunRejectsBadConfiguration: exit code 2 and one line per problem.
func TestRunRejectsBadConfiguration(t *testing.T) {
	t.Parallel()
	env := environment(map[string]string{"LEASE_DURATION": "soon", "HEALTH_PORT": "http", "NAMESPACE": "default"})
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), nil, env, &stdout, &stderr); code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
	for _, want := range []string{"LEASE_NAME is required", `LEASE_DURATION="soon": must be a Go duration`, `HEALTH_PORT="http": must be a whole number`} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
	if code := run(context.Background(), []string{"--bogus"}, env, &stdout, &stderr); code != 2 {
		t.Errorf("unknown argument: exit code = %d, want 2", code)
	}
}

// TestReadmeListsEveryVariable keeps README's configuration table equal to
// the configuration struct: names, defaults and meanings, in order.
func TestReadmeListsEveryVariable(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	row := regexp.MustCompile("(?m)^\\| `[A-Z_]+` \\|.*\\|$")
	got := row.FindAllString(string(readme), -1)
	var want []string
	for _, v := range config.Variables() {
		def := "`" + v.Default + "`"
		switch {
		case v.Required:
			def = "required"
		case v.Default == "":
			def = "-"
		}
		want = append(want, fmt.Sprintf("| `%s` | %s | %s |", v.Name, def, v.Description))
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("README's configuration table differs from config.Config; it should read:\n\n| variable | default | meaning |\n|---|---|---|\n%s", strings.Join(want, "\n"))
	}
}

// TestRunReportsABadKubeconfig: a valid configuration whose KUBECONFIG does
// not exist is a configuration error like any other: exit code 2 and a line
// naming the variable and its value.
func TestRunReportsABadKubeconfig(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	env := environment(map[string]string{"LEASE_NAME": "myapp-lock", "NAMESPACE": "default", "KUBECONFIG": missing, "LOG_LEVEL": "error"})
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), nil, env, &stdout, &stderr); code != 2 {
		t.Errorf("exit code = %d, want 2", code)
	}
	if want := "invalid configuration:\n  load KUBECONFIG=\"" + missing + "\""; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %s:\n%s", want, stderr.String())
	}
}

// environment is a lookup of vars alone, in place of the process's.
func environment(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// TestRunFrontEnds: each original's invocation reaches a valid
// configuration (then stops at the missing kubeconfig, exit code 2, logging
// in the format it asked for); conflicts and bad values stop with exit code
// 2 and a line naming both settings or the one as the user wrote it. Not
// parallel: run sets klog's global logger once the configuration is valid.
func TestRunFrontEnds(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	awaitEnv := map[string]string{
		"K8S_AWAIT_ELECTION_ENABLED": "1", "K8S_AWAIT_ELECTION_NAME": "e", "K8S_AWAIT_ELECTION_LOCK_NAME": "lock",
		"K8S_AWAIT_ELECTION_LOCK_NAMESPACE": "default", "K8S_AWAIT_ELECTION_IDENTITY": "pod-0", "KUBECONFIG": missing,
	}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want []string // in stderr
	}{
		{name: "nais/elector as naiserator starts it",
			args: []string{"--election=myapp", "--election-namespace=ns", "--http=localhost:4040", "--probe-address=0.0.0.0:4041"},
			env:  map[string]string{"ELECTOR_LOG_FORMAT": "json", "KUBECONFIG": missing},
			code: 2, want: []string{`{"time":`, `"front_end":"nais/elector"`, `"PROBE_ADDRESS":"0.0.0.0:4041"`, `KUBECONFIG="`}},
		{name: "nais/elector from ELECTOR_* alone",
			env:  map[string]string{"ELECTOR_ELECTION": "myapp", "ELECTOR_ELECTION_NAMESPACE": "ns", "ELECTOR_LOG_FORMAT": "json", "KUBECONFIG": missing},
			code: 2, want: []string{`"front_end":"nais/elector"`, `"LEASE_NAME":"myapp"`}},
		{name: "contrib leader-elector",
			args: []string{"--election=example", "--http=0.0.0.0:4040", "--id=x", "--ttl=10s"},
			env:  map[string]string{"POD_NAMESPACE": "default", "KUBECONFIG": missing},
			code: 2, want: []string{"front_end=\"contrib leader-elector\"", "LEASE_DURATION:10s", "RETRY_PERIOD:2.5s"}},
		{name: "k8s-await-election with ENABLED=false warns",
			args: []string{"mycmd", "arg"}, env: with(awaitEnv, "K8S_AWAIT_ELECTION_ENABLED", "false"),
			code: 2, want: []string{"front_end=k8s-await-election", `K8S_AWAIT_ELECTION_ENABLED=\"false\" reads as false`}},
		{name: "conflict: flag and ELECTOR_ variable",
			args: []string{"--election=a", "--election-namespace=ns"}, env: map[string]string{"ELECTOR_ELECTION": "b"},
			code: 2, want: []string{"invalid configuration", `--election="a" and ELECTOR_ELECTION="b"`}},
		{name: "conflict: flag and our variable",
			args: []string{"--election=a", "--election-namespace=ns"}, env: map[string]string{"LEASE_NAME": "b"},
			code: 2, want: []string{`--election="a" and LEASE_NAME="b"`}},
		{name: "conflict: PROBE_ADDRESS and HEALTH_PORT",
			env:  map[string]string{"LEASE_NAME": "lock", "NAMESPACE": "ns", "PROBE_ADDRESS": ":9000", "HEALTH_PORT": "8080"},
			code: 2, want: []string{`PROBE_ADDRESS=":9000" and HEALTH_PORT="8080"`}},
		{name: "conflict: K8S_AWAIT_ELECTION_LOCK_NAME and LEASE_NAME",
			args: []string{"mycmd"}, env: with(awaitEnv, "LEASE_NAME", "other"),
			code: 2, want: []string{`K8S_AWAIT_ELECTION_LOCK_NAME="lock" and LEASE_NAME="other"`}},
		{name: "conflict: two electors' flags",
			args: []string{"--election=a", "--ttl=10s", "--log-format=json"},
			code: 2, want: []string{"--ttl is contrib leader-elector's and --log-format nais/elector's"}},
		{name: "bad value named as written",
			args: []string{"--election=My_App", "--election-namespace=ns"},
			code: 2, want: []string{`--election="My_App": must be a valid object name`}},
		{name: "unknown flag", args: []string{"--bogus"}, code: 2, want: []string{"unknown flag: --bogus"}},
		{name: "k8s-await-election without a command", env: awaitEnv, code: 2, want: []string{"none is given"}},
		{name: "a command that is not found", args: []string{"no-such-command-anywhere"}, code: 127, want: []string{"no-such-command-anywhere"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(context.Background(), tt.args, environment(tt.env), &stdout, &stderr); code != tt.code {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %s:\n%s", w, stderr.String())
				}
			}
		})
	}
}

// TestRunHelpNamesTheFrontEnds: --help lists our variables and the
// originals' ways of starting.
func TestRunHelpNamesTheFrontEnds(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"--election=a", "-h"}} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), args, environment(nil), &stdout, &stderr); code != 0 {
			t.Errorf("run(%q) = %d, want 0", args, code)
		}
		for _, w := range []string{"LEASE_NAME", "PROBE_ADDRESS", "nais/elector", "ELECTOR_ELECTION", "contrib leader-elector", "--ttl", "K8S_AWAIT_ELECTION_ENABLED", "-- COMMAND"} {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("run(%q) help lacks %q:\n%s", args, w, stdout.String())
			}
		}
	}
}

// TestRunExecsTheCommandWithoutElection: k8s-await-election's variables
// without K8S_AWAIT_ELECTION_ENABLED exec the command in place of the
// process (its exit status, its output), with no Kubernetes API: this test
// process re-runs itself as the sidecar, with a kubeconfig that does not
// exist, which an election would fail on.
func TestRunExecsTheCommandWithoutElection(t *testing.T) {
	if os.Getenv("LEADER_ELECTOR_TEST_EXEC") == "1" {
		os.Exit(run(context.Background(), []string{"sh", "-c", `echo "ran as $K8S_AWAIT_ELECTION_LOCK_NAME"; exit 7`}, os.LookupEnv, os.Stdout, os.Stderr))
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunExecsTheCommandWithoutElection$")
	cmd.Env = append(os.Environ(), "LEADER_ELECTOR_TEST_EXEC=1", "K8S_AWAIT_ELECTION_LOCK_NAME=lock",
		"K8S_AWAIT_ELECTION_ENABLED=", "KUBECONFIG="+filepath.Join(t.TempDir(), "missing"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 7 {
		t.Errorf("exit = %v, want the command's status 7; stderr:\n%s", err, stderr.String())
	}
	if got := strings.TrimSpace(string(out)); got != "ran as lock" {
		t.Errorf("stdout = %q, want the command's output %q", got, "ran as lock")
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}
