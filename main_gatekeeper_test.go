package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/internal/outputs/gatekeeper"
)

// TestRunArgumentsAroundTheCommand: what follows -- is the command, never
// an argument of the sidecar's; -- alone is an error.
func TestRunArgumentsAroundTheCommand(t *testing.T) {
	t.Parallel()
	env := environment(map[string]string{"NAMESPACE": "default"}) // no LEASE_NAME: stops at the configuration
	for _, tc := range []struct {
		name   string
		args   []string
		stdout string // in stdout
		stderr string // in stderr
	}{
		{"-- alone", []string{"--"}, "", `"--" must be followed by the command`},
		{"unknown argument before --", []string{"--bogus", "--", "sleep"}, "", "unknown flag: --bogus"},
		{"the command's flags are its own", []string{"--", "sleep", "--help"}, "", "LEASE_NAME is required"},
		{"--help before --", []string{"--help", "--", "sleep"}, "LEASE_NAME", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, env, &stdout, &stderr)
			want := 2
			if tc.stdout != "" {
				want = 0
			}
			if code != want || !strings.Contains(stdout.String(), tc.stdout) || !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("run(%q) = %d, stdout %q, stderr %q; want %d, %q and %q", tc.args, code, stdout.String(), stderr.String(), want, tc.stdout, tc.stderr)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	t.Parallel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, tc := range []struct {
		err  error
		want int
	}{
		{nil, 0},
		{errors.New("lease lost"), 1},
		{gatekeeper.ErrLeadershipLost, 1},
		{fmt.Errorf("command: %w", &gatekeeper.ExitError{Code: 0, Err: errors.New("exit status 0")}), 0},
		{fmt.Errorf("command: %w", &gatekeeper.ExitError{Code: 143, Err: errors.New("signal: terminated")}), 143},
		{&gatekeeper.ExitError{Code: 127, Err: errors.New("not found")}, 127},
	} {
		if got := exitCode(tc.err, quiet); got != tc.want {
			t.Errorf("exitCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
