package testcluster

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestProcessAsInAPod: a process started as in a pod of its own has its own
// hostname and /tmp, and only the environment it was given.
func TestProcessAsInAPod(t *testing.T) {
	t.Setenv("LEASE_NAME", "must-not-leak")
	dir := t.TempDir()
	spec := ProcessSpec{Args: []string{"-c", "hostname; echo $FOO $LEASE_NAME; touch /tmp/inside"},
		Env: []string{"FOO=bar"}, CleanEnv: true, Hostname: "pod-q", Tmp: dir}
	// The binary lives under the /tmp the process does not see.
	sh := filepath.Join(t.TempDir(), "sh")
	b, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sh, b, 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := StartProcessWith("sh", sh, spec, filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(10 * time.Second):
		_ = p.Stop(9, time.Second)
		t.Fatal("the process did not end")
	}
	if err := p.ExitErr(); err != nil {
		t.Fatalf("%v: %s", err, p.Log())
	}
	if got, want := p.Log(), "pod-q\nbar\n"; got != want {
		t.Errorf("output %q, want %q (own hostname, only the given environment)", got, want)
	}
	if _, err := os.Stat(filepath.Join(dir, "inside")); err != nil {
		t.Errorf("the process's /tmp is not its own: %v", err)
	}
	if h, _ := os.Hostname(); h == "pod-q" {
		t.Error("the test's own hostname changed")
	}
}
