package main

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/config"
)

// TestReleaseBuildIsStaticAndStarts builds with `make build`, the target the
// Dockerfile's build stage runs, and checks the binary is static (it runs on
// distroless/static) and starts.
func TestReleaseBuildIsStaticAndStarts(t *testing.T) {
	dockerfile, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"RUN make build VERSION=", "FROM gcr.io/distroless/static-debian12:nonroot", "USER 65532:65532", `ENTRYPOINT ["/leader-elector"]`} {
		if !bytes.Contains(dockerfile, []byte(want)) {
			t.Errorf("Dockerfile does not contain %q", want)
		}
	}
	dir := t.TempDir()
	cmd := exec.Command("make", "build", "BIN="+dir, "VERSION=v9.8.7-test")
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
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || strings.TrimSpace(string(out)) != "v9.8.7-test" {
		t.Errorf("--version = %q (%v), want the stamped v9.8.7-test", out, err)
	}
	out, err = exec.Command(bin, "--help").Output()
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
// not exist stops with exit code 1 and a log line naming the variable.
func TestRunReportsABadKubeconfig(t *testing.T) {
	t.Parallel()
	missing := filepath.Join(t.TempDir(), "no-such-kubeconfig")
	env := environment(map[string]string{"LEASE_NAME": "myapp-lock", "NAMESPACE": "default", "KUBECONFIG": missing})
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), nil, env, &stdout, &stderr); code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if want := `KUBECONFIG=\"` + missing + `\"`; !strings.Contains(stderr.String(), want) {
		t.Errorf("stderr lacks %s:\n%s", want, stderr.String())
	}
	if n := strings.Count(strings.TrimSpace(stderr.String()), "\n") + 1; n != 1 {
		t.Errorf("stderr has %d lines, want one:\n%s", n, stderr.String())
	}
}

// environment is a lookup of vars alone, in place of the process's.
func environment(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}
