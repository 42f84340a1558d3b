package control

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := env[k]; return v, ok }
}

// TestMain_ against a real server on a socket in a temporary directory.
func TestMainAgainstAServer(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		args       []string
		err        error // of Handover
		noServer   bool
		stale      bool                               // a socket nobody listens on, in place of the server
		env        func(dir string) map[string]string // default: CONTROL_SOCKET in dir
		wantCode   int
		wantStdout string
		wantStderr []string
		wantCalls  []string
	}{
		{name: "release", wantCode: 0, wantStdout: "leader-elector resign: stepped down and released the Lease\n", wantCalls: []string{""}},
		{name: "hand to a peer", args: []string{"--to", "pod-b"}, wantCode: 0,
			wantStdout: "leader-elector resign: stepped down and handed the Lease to pod-b\n", wantCalls: []string{"pod-b"}},
		{name: "socket next to STATUS_FILE", args: []string{"--to=pod-c"},
			env: func(dir string) map[string]string {
				return map[string]string{"STATUS_FILE": filepath.Join(dir, "leader_status")}
			},
			wantCode: 0, wantStdout: "handed the Lease to pod-c", wantCalls: []string{"pod-c"}},
		{name: "socket next to STATUS_DIR",
			env: func(dir string) map[string]string {
				return map[string]string{"STATUS_DIR": filepath.Join(dir, "leader_status")}
			},
			wantCode: 0, wantStdout: "released the Lease", wantCalls: []string{""}},
		{name: "not the leader", err: errNotLeader, wantCode: 1, wantStderr: []string{"leader-elector resign: refused: not the leader\n"}, wantCalls: []string{""}},
		{name: "failed", args: []string{"--to", "pod-b"}, err: errAPI, wantCode: 1,
			wantStderr: []string{"leader-elector resign: the sidecar answered HTTP 500: writing the Lease: connection refused\n"}, wantCalls: []string{"pod-b"}},
		{name: "no sidecar", noServer: true, wantCode: 1,
			wantStderr: []string{"leader-elector resign: no leader-elector is listening on ", "leader-elector.sock (CONTROL_SOCKET): ", "no such file or directory", "run it in the sidecar's container"}},
		{name: "stale socket", stale: true, wantCode: 1,
			wantStderr: []string{"no leader-elector is listening on ", "(CONTROL_SOCKET): ", "connection refused"}},
		{name: "socket off", env: func(string) map[string]string { return map[string]string{"CONTROL_SOCKET": "-"} }, wantCode: 2,
			wantStderr: []string{`leader-elector resign: the control socket is off, so the sidecar takes no requests: CONTROL_SOCKET="-"`}},
		{name: "default off: too long", env: func(string) map[string]string {
			return map[string]string{"STATUS_FILE": "/" + strings.Repeat("d", 100) + "/leader_status"}
		}, wantCode: 2, wantStderr: []string{"the control socket is off", "its default next to the status file", "set CONTROL_SOCKET to a shorter path"}},
		{name: "socket path too long", env: func(string) map[string]string {
			return map[string]string{"CONTROL_SOCKET": "/" + strings.Repeat("s", 120)}
		}, wantCode: 2, wantStderr: []string{`leader-elector resign: CONTROL_SOCKET="/sss`, "must not be more than 107 bytes long"}},
		{name: "argument", args: []string{"pod-b"}, wantCode: 2,
			wantStderr: []string{`leader-elector resign: unexpected argument "pod-b": resign takes only flags; name the peer with --to`}},
		{name: "empty --to", args: []string{"--to", ""}, wantCode: 2, wantStderr: []string{`leader-elector resign: --to="": name the peer`}},
		{name: "bad timeout", args: []string{"--timeout", "soon"}, wantCode: 2, wantStderr: []string{`invalid value "soon" for flag -timeout`}},
		{name: "unknown flag", args: []string{"--force"}, wantCode: 2, wantStderr: []string{"flag provided but not defined: -force (see --help)"}},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStdout: "Usage: leader-elector resign [--to POD] [--timeout D]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := shortDir(t)
			env := map[string]string{"CONTROL_SOCKET": filepath.Join(dir, "leader-elector.sock")}
			if tt.env != nil {
				env = tt.env(dir)
			}
			f := &fakeResigner{err: tt.err}
			switch {
			case tt.stale:
				staleSocket(t, filepath.Join(dir, "leader-elector.sock"))
			case !tt.noServer:
				serve(t, filepath.Join(dir, "leader-elector.sock"), f)
			}
			var stdout, stderr bytes.Buffer
			code := Main(context.Background(), tt.args, lookupIn(env), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("Main(%q) = %d, want %d; stdout %q, stderr %q", tt.args, code, tt.wantCode, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) || (tt.wantStdout == "" && stdout.Len() > 0) {
				t.Errorf("Main(%q) stdout %q, want %q", tt.args, stdout.String(), tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("Main(%q) stderr %q lacks %q", tt.args, stderr.String(), w)
				}
			}
			if len(tt.wantStderr) == 0 && stderr.Len() > 0 {
				t.Errorf("Main(%q) stderr %q, want none", tt.args, stderr.String())
			}
			if n := strings.Count(stderr.String(), "\n"); n > 1 {
				t.Errorf("Main(%q) stderr has %d lines, want one", tt.args, n)
			}
			if got := f.Calls(); strings.Join(got, ",") != strings.Join(tt.wantCalls, ",") || len(got) != len(tt.wantCalls) {
				t.Errorf("Handover calls = %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

// TestMainTimeout: --timeout ends the wait for an answer with exit code 1;
// the handover itself goes on.
func TestMainTimeout(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "leader-elector.sock")
	f := &fakeResigner{block: make(chan struct{}), entered: make(chan string, 1)}
	serve(t, path, f)
	t.Cleanup(func() { close(f.block) }) // before serve's cleanup: the handover then ends on its own
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), []string{"--timeout", "50ms"}, lookupIn(map[string]string{"CONTROL_SOCKET": path}), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "leader-elector resign: no answer from "+path+" within 50ms; the handover may still complete") {
		t.Errorf("Main(--timeout 50ms) = %d, stderr %q; want 1 and no answer within 50ms", code, stderr.String())
	}
	if to := <-f.entered; to != "" {
		t.Errorf("Handover(to=%q), want \"\"", to)
	}
}
