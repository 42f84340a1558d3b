package await

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

// TestMain_ExitCodes: the exit code and the one line on stderr for each
// kind of outcome.
func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	leading := filepath.Join(dir, "leading")
	write(t, leading, "pod-0\n")
	mounted := filepath.Join(dir, "mounted") // the emptyDir mounted at the status file's path
	if err := os.Mkdir(mounted, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(mounted, "leader_status"), "pod-0\n")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(leading, link); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing")

	tests := []struct {
		name       string
		args       []string
		env        map[string]string
		wantCode   int
		wantStderr string // a part of the one line; "" = stderr empty
		wantStdout string
	}{
		{name: "leader by default", args: []string{"--file", leading}, wantCode: 0},
		{name: "--leader", args: []string{"--leader", "--file", leading}, wantCode: 0},
		{name: "single dash flags", args: []string{"-follower", "-file", missing}, wantCode: 0},
		{name: "directory holds leader_status", args: []string{"--file", mounted}, wantCode: 0},
		{name: "STATUS_FILE", args: []string{"--timeout=1s"}, env: map[string]string{"STATUS_FILE": leading}, wantCode: 0},
		{name: "STATUS_DIR", args: []string{"--timeout=1s"}, env: map[string]string{"STATUS_DIR": mounted}, wantCode: 0},
		{name: "--file wins over STATUS_FILE", args: []string{"--follower", "--file", missing, "--timeout=1s"}, env: map[string]string{"STATUS_FILE": leading}, wantCode: 0},
		{name: "timeout", args: []string{"--file", missing, "--timeout", "50ms"}, wantCode: ExitTimeout,
			wantStderr: "leader-elector await: timed out after 50ms waiting until " + missing + " says leader"},
		{name: "timeout as follower", args: []string{"--follower", "--file", leading, "--timeout", "50ms"}, wantCode: ExitTimeout,
			wantStderr: "says follower"},
		{name: "bad timeout", args: []string{"--timeout", "soon"}, wantCode: 2,
			wantStderr: `leader-elector await: invalid value "soon" for flag -timeout: must be a Go duration that is not negative`},
		{name: "negative timeout", args: []string{"--timeout=-1s"}, wantCode: 2, wantStderr: `invalid value "-1s" for flag -timeout`},
		{name: "both roles", args: []string{"--leader", "--follower"}, wantCode: 2,
			wantStderr: "leader-elector await: --leader and --follower exclude each other"},
		{name: "unknown flag", args: []string{"--leeder"}, wantCode: 2,
			wantStderr: "leader-elector await: flag provided but not defined: -leeder"},
		{name: "argument", args: []string{"myapp"}, wantCode: 2,
			wantStderr: `leader-elector await: unexpected argument "myapp"`},
		{name: "symbolic link refused", args: []string{"--file", link}, wantCode: 2,
			wantStderr: "must not be a symbolic link"},
		{name: "unwatchable directory", args: []string{"--file", filepath.Join(missing, "leader_status")}, wantCode: 1,
			wantStderr: "leader-elector await: waiting until " + filepath.Join(missing, "leader_status") + " says leader: watch status directory"},
		{name: "help", args: []string{"--help"}, wantCode: 0, wantStdout: "Exit codes: 0 the file says so"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			code := Main(ctx, tt.args, env(tt.env), &stdout, &stderr)
			if code != tt.wantCode {
				t.Errorf("exit code = %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			switch {
			case tt.wantStderr == "" && stderr.Len() > 0:
				t.Errorf("stderr = %q, want it empty", stderr.String())
			case tt.wantStderr != "":
				if !strings.Contains(stderr.String(), tt.wantStderr) {
					t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.wantStderr)
				}
				if n := strings.Count(stderr.String(), "\n"); n != 1 {
					t.Errorf("stderr has %d lines, want one: %q", n, stderr.String())
				}
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
		})
	}
}

// TestMainWaitsForTheFile: `await --leader` with no timeout returns 0 once
// the file appears.
func TestMainWaitsForTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leader_status")
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() { done <- Main(t.Context(), []string{"--file", path}, env(nil), &bytes.Buffer{}, &stderr) }()
	select {
	case code := <-done:
		t.Fatalf("await returned %d before the file existed (stderr %q)", code, stderr.String())
	case <-time.After(100 * time.Millisecond):
	}
	write(t, path, "pod-0\n")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code = %d, want 0 (stderr %q)", code, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("await did not return within 5s of the file appearing")
	}
}
