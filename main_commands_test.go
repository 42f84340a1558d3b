package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/internal/commands/completion"
)

// TestRunDispatchesCommands: the first argument picks await, status or resign; their
// exit codes come through.
func TestRunDispatchesCommands(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "leader_status")
	tests := []struct {
		args       []string
		wantCode   int
		wantStderr string
	}{
		{[]string{"await", "--timeout", "10ms", "--file", missing}, 3, "leader-elector await: timed out after 10ms"},
		{[]string{"await", "--leader", "--follower"}, 2, "leader-elector await: --leader and --follower exclude each other"},
		{[]string{"status"}, 2, "leader-elector status: want one argument, the Lease's name"},
		{[]string{"status", "-o", "yaml", "myapp-lock"}, 2, `leader-elector status: -o="yaml": must be table or json`},
		{[]string{"resign", "pod-b"}, 2, `leader-elector resign: unexpected argument "pod-b"`},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, environment(nil), &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("run(%q) = %d, stderr %q; want %d, %q", tt.args, code, stderr.String(), tt.wantCode, tt.wantStderr)
		}
	}
}

// TestRunReservesItsWords: help, version and completion are never exec'd as
// commands, and a typo of a subcommand is named, not run.
func TestRunReservesItsWords(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"help"}, 0, "Commands (each with --help)", ""},
		{[]string{"--help"}, 0, "leader-elector --version", ""},
		{[]string{"version"}, 0, "dev", ""},
		{[]string{"completion", "bash"}, 0, "complete -o default -F _leader_elector leader-elector", ""},
		{[]string{"statsu", "myapp-lock"}, 2, "", "did you mean `leader-elector status`?"},
		{[]string{"resing"}, 2, "", "did you mean `leader-elector resign`?"},
		{[]string{"awiat", "--leader"}, 2, "", "did you mean `leader-elector await`?"},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tt.args, environment(nil), &stdout, &stderr)
		if code != tt.wantCode || !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
			t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q, %q", tt.args, code, stdout.String(), stderr.String(), tt.wantCode, tt.wantStdout, tt.wantStderr)
		}
	}
}

// TestRunRefusesACommandWithoutDashes: with one of our own variables set, a
// command without "--" is a forgotten "--", not k8s-await-election without
// an election: it would run on every replica. The general variables an app
// has for itself (POD_NAME, NAMESPACE, ...) do not count.
func TestRunRefusesACommandWithoutDashes(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := environment(map[string]string{"LEASE_NAME": "x", "NAMESPACE": "default"})
	// Were it run, it would replace the test process and fail the run.
	command := []string{"sh", "-c", "exit 3"}
	if code := run(context.Background(), command, env, &stdout, &stderr); code != 2 {
		t.Errorf("exit code = %d, want 2; stderr %q", code, stderr.String())
	}
	for _, want := range []string{`LEASE_NAME="x"`, "`leader-elector -- sh -c \"exit 3\"`", "every replica"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q: %q", want, stderr.String())
		}
	}
	if stdout.Len() != 0 {
		t.Errorf("stdout %q: the command ran", stdout.String())
	}
}

// TestCompletionListsEachFlag keeps the shell completion equal to what
// each subcommand's --help lists.
func TestCompletionListsEachFlag(t *testing.T) {
	flagRE := regexp.MustCompile(`(?m)^\s+(-{1,2}[a-z][-a-z]*)`)
	for sub, flags := range completion.Flags {
		if sub == "completion" {
			continue
		}
		var stdout, stderr bytes.Buffer
		run(context.Background(), []string{sub, "--help"}, func(string) (string, bool) { return "", false }, &stdout, &stderr)
		help := stdout.String() + stderr.String()
		var listed []string
		for _, m := range flagRE.FindAllStringSubmatch(help, -1) {
			listed = append(listed, "-"+strings.TrimLeft(m[1], "-"))
		}
		for _, f := range flags {
			if f == "--help" {
				continue
			}
			if !slices.Contains(listed, "-"+strings.TrimLeft(f, "-")) {
				t.Errorf("completion offers %s %s, which %s --help does not list:\n%s", sub, f, sub, help)
			}
		}
		for _, l := range listed {
			if !slices.ContainsFunc(flags, func(f string) bool { return "-"+strings.TrimLeft(f, "-") == l }) {
				t.Errorf("%s --help lists %s, which the completion does not offer", sub, l)
			}
		}
	}
}
