package config

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlSocket: the path the sidecar and `resign` both compute, from
// CONTROL_SOCKET or next to the status file.
func TestControlSocket(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	shared := filepath.Join(tmp, "shared") // an existing directory as STATUS_FILE: leader_status inside it
	if err := os.Mkdir(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	cwd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	long := "/" + strings.Repeat("d", MaxSocketPath-len("/leader-elector.sock")) // one byte too long with the name
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantOff string // in the reason the socket is off
		wantErr []string
	}{
		{name: "default", want: "/tmp/leader-elector.sock"},
		{name: "empty: default", env: map[string]string{"CONTROL_SOCKET": ""}, want: "/tmp/leader-elector.sock"},
		{name: "next to STATUS_FILE", env: map[string]string{"STATUS_FILE": "/run/le/status"}, want: "/run/le/leader-elector.sock"},
		{name: "next to STATUS_DIR", env: map[string]string{"STATUS_DIR": "/run/le/status"}, want: "/run/le/leader-elector.sock"},
		{name: "in a STATUS_FILE directory", env: map[string]string{"STATUS_FILE": shared}, want: filepath.Join(shared, "leader-elector.sock")},
		{name: "set", env: map[string]string{"CONTROL_SOCKET": "/var/run/ctl.sock", "STATUS_FILE": "/run/le/status"}, want: "/var/run/ctl.sock"},
		{name: "relative: made absolute", env: map[string]string{"CONTROL_SOCKET": "ctl.sock"}, want: filepath.Join(cwd, "ctl.sock")},
		{name: "off", env: map[string]string{"CONTROL_SOCKET": "-"}, wantOff: `CONTROL_SOCKET="-"`},
		{name: "longest", env: map[string]string{"CONTROL_SOCKET": "/" + strings.Repeat("s", MaxSocketPath-1)}, want: "/" + strings.Repeat("s", MaxSocketPath-1)},
		{name: "too long", env: map[string]string{"CONTROL_SOCKET": "/" + strings.Repeat("s", MaxSocketPath)},
			wantErr: []string{`CONTROL_SOCKET="/sss`, "must not be more than 107 bytes long (108), the limit of a unix socket's path", `or "-" to turn the socket off`}},
		{name: "default too long: off", env: map[string]string{"STATUS_FILE": long + "/status"},
			wantOff: fmt.Sprintf("CONTROL_SOCKET is not set, and its default next to the status file, %q, is more than 107 bytes long (108)", long+"/leader-elector.sock")},
		{name: "NUL", env: map[string]string{"CONTROL_SOCKET": "/tmp/a\x00b"}, wantErr: []string{`CONTROL_SOCKET="/tmp/a\x00b": must not contain a NUL byte`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, off, err := ControlSocket(lookupIn(tt.env))
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ControlSocket() = %q, want an error", got)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("ControlSocket() error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil || got != tt.want || !strings.Contains(off, tt.wantOff) || (tt.wantOff == "") != (off == "") {
				t.Errorf("ControlSocket() = %q, off %q, %v; want %q, off %q", got, off, err, tt.want, tt.wantOff)
			}
		})
	}
}

// TestLoadControlSocket: Load resolves the path into Config, reports a bad
// one as one line, and does not report a refused status file twice.
func TestLoadControlSocket(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(filepath.Join(tmp, "target"), link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    string
		wantErr string
	}{
		{name: "next to STATUS_FILE", env: map[string]string{"STATUS_FILE": "/run/le/status"}, want: "/run/le/leader-elector.sock"},
		{name: "off", env: map[string]string{"CONTROL_SOCKET": "-"}, want: ""},
		{name: "default too long: off, no error", env: map[string]string{"STATUS_FILE": "/" + strings.Repeat("d", 100) + "/status"}, want: ""},
		{name: "too long", env: map[string]string{"CONTROL_SOCKET": "/" + strings.Repeat("s", 200)}, wantErr: "CONTROL_SOCKET=\"/sss"},
		{name: "status file refused: reported for STATUS_FILE only", env: map[string]string{"STATUS_FILE": link}, wantErr: fmt.Sprintf("STATUS_FILE=%q", link)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := minimalEnv()
			maps.Copy(env, tt.env)
			c, err := Load(lookupIn(env), testSources(t))
			if tt.wantErr != "" {
				if lines := errLines(err); len(lines) != 1 || !strings.Contains(lines[0], tt.wantErr) {
					t.Fatalf("Load() error = %v, want one line with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || c.ControlSocket != tt.want || (c.ControlSocket == "") == (c.ControlSocketOff == "") {
				t.Errorf("Load() ControlSocket = %q (off: %q), error %v; want %q, and a reason when off", c.ControlSocket, c.ControlSocketOff, err, tt.want)
			}
		})
	}
}
