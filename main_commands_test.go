package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
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
