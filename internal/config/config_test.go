package config

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/status"
)

// lookupIn is os.LookupEnv on env alone, so that tests need not touch the
// process environment and can run in parallel.
func lookupIn(env map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	}
}

// testSources has a fixed hostname and a namespace file that does not exist.
func testSources(t *testing.T) Sources {
	t.Helper()
	return Sources{
		Hostname:      func() (string, error) { return "pod-0", nil },
		NamespaceFile: filepath.Join(t.TempDir(), "namespace"),
	}
}

// minimalEnv is the smallest valid environment.
func minimalEnv() map[string]string {
	return map[string]string{"LEASE_NAME": "my-lease", "NAMESPACE": "default"}
}

// errLines splits a joined error into its lines.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestLoadRejectsBadInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		env   map[string]string // merged over minimalEnv; "" values are set empty
		unset []string          // removed from minimalEnv
		src   func(t *testing.T, s *Sources)
		want  []string // in every line of the error
		lines int      // lines in the error; 0 means 1
	}{
		{
			name: "STATUS_ENDPOINT without a port",
			env:  map[string]string{"STATUS_ENDPOINT": "localhost"},
			want: []string{`STATUS_ENDPOINT="localhost"`, "must be host:port", "must be host:port"},
		},
		{
			name: "STATUS_ENDPOINT with a named port",
			env:  map[string]string{"STATUS_ENDPOINT": ":http"},
			want: []string{`STATUS_ENDPOINT=":http"`, "must be host:port", "with a port from 1 to 65535"},
		},
		{
			name: "STATUS_ENDPOINT port out of range",
			env:  map[string]string{"STATUS_ENDPOINT": "0.0.0.0:70000"},
			want: []string{`STATUS_ENDPOINT="0.0.0.0:70000"`, "from 1 to 65535"},
		},
		{
			name: "COMMAND_STOP_GRACE not a duration",
			env:  map[string]string{"COMMAND_STOP_GRACE": "10"},
			want: []string{`COMMAND_STOP_GRACE="10"`, "must be a Go duration"},
		},
		{
			name: "COMMAND_STOP_GRACE empty",
			env:  map[string]string{"COMMAND_STOP_GRACE": ""},
			want: []string{`COMMAND_STOP_GRACE=""`, "must be a Go duration"},
		},
		{
			name: "COMMAND_STOP_GRACE zero",
			env:  map[string]string{"COMMAND_STOP_GRACE": "0s"},
			want: []string{`COMMAND_STOP_GRACE="0s"`, "must be greater than zero and at most 1h0m0s"},
		},
		{
			name: "COMMAND_STOP_GRACE negative",
			env:  map[string]string{"COMMAND_STOP_GRACE": "-1s"},
			want: []string{`COMMAND_STOP_GRACE="-1s"`, "must be greater than zero"},
		},
		{
			name: "COMMAND_STOP_GRACE too long",
			env:  map[string]string{"COMMAND_STOP_GRACE": "61m"},
			want: []string{`COMMAND_STOP_GRACE="61m"`, "at most 1h0m0s"},
		},
		{
			name:  "LEASE_NAME missing",
			unset: []string{"LEASE_NAME"},
			want:  []string{"LEASE_NAME", "is required"},
		},
		{
			name: "LEASE_NAME empty",
			env:  map[string]string{"LEASE_NAME": ""},
			want: []string{`LEASE_NAME=""`, "must not be empty"},
		},
		{
			name: "LEASE_NAME invalid name",
			env:  map[string]string{"LEASE_NAME": "Bad_Name"},
			want: []string{`LEASE_NAME="Bad_Name"`, "must be a valid object name", "RFC 1123 subdomain"},
		},
		{
			name: "NAMESPACE invalid",
			env:  map[string]string{"NAMESPACE": "UPPER"},
			want: []string{`NAMESPACE="UPPER"`, "must be a valid namespace name", "RFC 1123 label"},
		},
		{
			name:  "POD_NAMESPACE fallback invalid",
			unset: []string{"NAMESPACE"},
			env:   map[string]string{"POD_NAMESPACE": "Pod_NS"},
			want:  []string{`NAMESPACE="Pod_NS"`, "must be a valid namespace name"},
		},
		{
			name:  "namespace file fallback invalid",
			unset: []string{"NAMESPACE"},
			src: func(t *testing.T, s *Sources) {
				writeFile(t, s.NamespaceFile, "File_NS\n")
			},
			// Named after the file, not NAMESPACE, which the user did not set.
			want: []string{`namespace "File_NS" from `, "/namespace: must be a valid namespace name"},
		},
		{
			name:  "no namespace anywhere",
			unset: []string{"NAMESPACE"},
			want:  []string{"NAMESPACE is not set", "POD_NAMESPACE", "namespace file", "set NAMESPACE"},
		},
		{
			name:  "namespace file blank",
			unset: []string{"NAMESPACE"},
			src: func(t *testing.T, s *Sources) {
				writeFile(t, s.NamespaceFile, " \n")
			},
			want: []string{"NAMESPACE is not set", "POD_NAMESPACE", "set NAMESPACE"},
		},
		{
			name: "IDENTITY unset and hostname fails",
			src: func(t *testing.T, s *Sources) {
				s.Hostname = func() (string, error) { return "", errors.New("uname failed") }
			},
			want: []string{"IDENTITY is not set", "uname failed", "set IDENTITY"},
		},
		{
			name: "IDENTITY unset and hostname empty",
			src: func(t *testing.T, s *Sources) {
				s.Hostname = func() (string, error) { return "", nil }
			},
			want: []string{"IDENTITY is not set", "hostname is empty", "set IDENTITY"},
		},
		{
			name: "STATUS_FILE and STATUS_DIR differ",
			env:  map[string]string{"STATUS_FILE": "/a/status", "STATUS_DIR": "/b"},
			want: []string{`STATUS_FILE="/a/status"`, `STATUS_DIR="/b"`, "set only one"},
		},
		{
			name: "EVENTS not a bool",
			env:  map[string]string{"EVENTS": "yes please"},
			want: []string{`EVENTS="yes please"`, "must be true or false"},
		},
		{
			name: "EVENTS empty",
			env:  map[string]string{"EVENTS": ""},
			want: []string{`EVENTS=""`, "must be true or false"},
		},
		{
			name: "HEALTH_PORT not a number",
			env:  map[string]string{"HEALTH_PORT": "http"},
			want: []string{`HEALTH_PORT="http"`, "must be a whole number"},
		},
		{
			name: "HEALTH_PORT empty",
			env:  map[string]string{"HEALTH_PORT": ""},
			want: []string{`HEALTH_PORT=""`, "must be a whole number"},
		},
		{
			name: "HEALTH_PORT zero",
			env:  map[string]string{"HEALTH_PORT": "0"},
			want: []string{`HEALTH_PORT="0"`, "must be a port number from 1 to 65535"},
		},
		{
			name: "HEALTH_PORT too big",
			env:  map[string]string{"HEALTH_PORT": "70000"},
			want: []string{`HEALTH_PORT="70000"`, "must be a port number from 1 to 65535"},
		},
		{
			name: "HEALTH_PORT negative",
			env:  map[string]string{"HEALTH_PORT": "-1"},
			want: []string{`HEALTH_PORT="-1"`, "must be a port number from 1 to 65535"},
		},
		{
			name: "HEALTH_PORT hexadecimal",
			env:  map[string]string{"HEALTH_PORT": "0x1f90"},
			want: []string{`HEALTH_PORT="0x1f90"`, "must be a whole number, in decimal"},
		},
		{
			name: "HEALTH_PORT octal prefix",
			env:  map[string]string{"HEALTH_PORT": "0o17"},
			want: []string{`HEALTH_PORT="0o17"`, "must be a whole number, in decimal"},
		},
		{
			name: "HEALTH_PORT with underscores",
			env:  map[string]string{"HEALTH_PORT": "8_080"},
			want: []string{`HEALTH_PORT="8_080"`, "must be a whole number, in decimal"},
		},
		{
			name: "PROBE_ADDRESS without a port",
			env:  map[string]string{"PROBE_ADDRESS": "0.0.0.0"},
			want: []string{`PROBE_ADDRESS="0.0.0.0"`, "must be host:port"},
		},
		{
			name: "PROBE_ADDRESS port zero",
			env:  map[string]string{"PROBE_ADDRESS": ":0"},
			want: []string{`PROBE_ADDRESS=":0"`, "a port from 1 to 65535"},
		},
		{
			name: "PROBE_ADDRESS port too big",
			env:  map[string]string{"PROBE_ADDRESS": "0.0.0.0:65536"},
			want: []string{`PROBE_ADDRESS="0.0.0.0:65536"`, "a port from 1 to 65535"},
		},
		{
			name: "PROBE_ADDRESS port by service name",
			env:  map[string]string{"PROBE_ADDRESS": "localhost:http"},
			want: []string{`PROBE_ADDRESS="localhost:http"`, "must be host:port"},
		},
		{
			name: "PROBE_ADDRESS port signed",
			env:  map[string]string{"PROBE_ADDRESS": ":+80"},
			want: []string{`PROBE_ADDRESS=":+80"`, "must be host:port"},
		},
		{
			name: "PROBE_ADDRESS host not a name",
			env:  map[string]string{"PROBE_ADDRESS": "bad_host:4041"},
			want: []string{`PROBE_ADDRESS="bad_host:4041"`, "the host must be an IP address or a DNS name"},
		},
		{
			name: "PROBE_ADDRESS and HEALTH_PORT disagree on the port",
			env:  map[string]string{"PROBE_ADDRESS": "0.0.0.0:4041", "HEALTH_PORT": "8080"},
			want: []string{`PROBE_ADDRESS="0.0.0.0:4041"`, `HEALTH_PORT="8080"`, "set only one"},
		},
		{
			name: "PROBE_ADDRESS and HEALTH_PORT disagree on the host",
			env:  map[string]string{"PROBE_ADDRESS": "127.0.0.1:8080", "HEALTH_PORT": "8080"},
			want: []string{`PROBE_ADDRESS="127.0.0.1:8080"`, `HEALTH_PORT="8080"`, "set only one"},
		},
		{
			// The parse error alone: no second line about the conflict.
			name: "PROBE_ADDRESS with a HEALTH_PORT that does not parse",
			env:  map[string]string{"PROBE_ADDRESS": ":4041", "HEALTH_PORT": "http"},
			want: []string{`HEALTH_PORT="http"`, "must be a whole number"},
		},
		{
			name: "HEALTH_PORT beyond int",
			env:  map[string]string{"HEALTH_PORT": "99999999999999999999"},
			want: []string{`HEALTH_PORT="99999999999999999999"`, "is out of range"},
		},
		{
			name: "METRICS_ADDRESS without a port",
			env:  map[string]string{"METRICS_ADDRESS": "127.0.0.1"},
			want: []string{`METRICS_ADDRESS="127.0.0.1"`, "must be host:port,"},
		},
		{
			name: "METRICS_ADDRESS a bare port",
			env:  map[string]string{"METRICS_ADDRESS": "9090"},
			want: []string{`METRICS_ADDRESS="9090"`, "must be host:port,"},
		},
		{
			name: "METRICS_ADDRESS a URL",
			env:  map[string]string{"METRICS_ADDRESS": "http://0.0.0.0:9090"},
			want: []string{`METRICS_ADDRESS="http://0.0.0.0:9090"`, "must be host:port"},
		},
		{
			name: "METRICS_ADDRESS port zero",
			env:  map[string]string{"METRICS_ADDRESS": ":0"},
			want: []string{`METRICS_ADDRESS=":0"`, "with a port from 1 to 65535"},
		},
		{
			name: "METRICS_ADDRESS port too big",
			env:  map[string]string{"METRICS_ADDRESS": "localhost:65536"},
			want: []string{`METRICS_ADDRESS="localhost:65536"`, "with a port from 1 to 65535"},
		},
		{
			name: "METRICS_ADDRESS port by name",
			env:  map[string]string{"METRICS_ADDRESS": ":http"},
			want: []string{`METRICS_ADDRESS=":http"`, "with a port from 1 to 65535"},
		},
		{
			name: "LABEL_POD_ROLE not a bool",
			env:  map[string]string{"LABEL_POD_ROLE": "yes please"},
			want: []string{`LABEL_POD_ROLE="yes please"`, "must be true or false"},
		},
		{
			name: "HEALTH_STREAMS not a bool",
			env:  map[string]string{"HEALTH_STREAMS": "on"},
			want: []string{`HEALTH_STREAMS="on"`, "must be true or false"},
		},
		{
			name: "LABEL_POD_ROLE without POD_NAME",
			env:  map[string]string{"LABEL_POD_ROLE": "true"},
			want: []string{"POD_NAME is required when LABEL_POD_ROLE=true", "Downward API"},
		},
		{
			name: "ROLE_LABEL_KEY invalid",
			env:  map[string]string{"ROLE_LABEL_KEY": "bad key!"},
			want: []string{`ROLE_LABEL_KEY="bad key!"`, "must be a valid label key"},
		},
		{
			name: "ROLE_LABEL_KEY empty",
			env:  map[string]string{"ROLE_LABEL_KEY": ""},
			// IsQualifiedName gives two messages, on one line for one variable.
			want: []string{`ROLE_LABEL_KEY=""`, "must be a valid label key", "name part must be non-empty; "},
		},
		{
			name: "PEER_SELECTOR unparsable",
			env:  map[string]string{"PEER_SELECTOR": "app in ("},
			want: []string{`PEER_SELECTOR="app in ("`, "must be a label selector such as app=myapp", "unable to parse"},
		},
		{
			name: "PEER_SELECTOR selects everything",
			env:  map[string]string{"PEER_SELECTOR": " "},
			want: []string{`PEER_SELECTOR=" "`, "must select something"},
		},
		{
			name: "LEASE_DURATION not a duration",
			env:  map[string]string{"LEASE_DURATION": "15"},
			want: []string{`LEASE_DURATION="15"`, "must be a Go duration"},
		},
		{
			name: "RENEW_DEADLINE not a duration",
			env:  map[string]string{"RENEW_DEADLINE": "ten seconds"},
			want: []string{`RENEW_DEADLINE="ten seconds"`, "must be a Go duration"},
		},
		{
			name: "RETRY_PERIOD not a duration",
			env:  map[string]string{"RETRY_PERIOD": "2x"},
			want: []string{`RETRY_PERIOD="2x"`, "must be a Go duration"},
		},
		{
			name: "LEASE_DURATION zero",
			env:  map[string]string{"LEASE_DURATION": "0s"},
			want: []string{`LEASE_DURATION="0s"`, "must be greater than zero"},
		},
		{
			name: "LEASE_DURATION negative",
			env:  map[string]string{"LEASE_DURATION": "-15s"},
			want: []string{`LEASE_DURATION="-15s"`, "must be greater than zero"},
		},
		{
			name: "RENEW_DEADLINE zero",
			env:  map[string]string{"RENEW_DEADLINE": "0s"},
			want: []string{`RENEW_DEADLINE="0s"`, "must be greater than zero"},
		},
		{
			name: "RENEW_DEADLINE negative",
			env:  map[string]string{"RENEW_DEADLINE": "-1s"},
			want: []string{`RENEW_DEADLINE="-1s"`, "must be greater than zero"},
		},
		{
			name: "RETRY_PERIOD zero",
			env:  map[string]string{"RETRY_PERIOD": "0s"},
			want: []string{`RETRY_PERIOD="0s"`, "must be greater than zero"},
		},
		{
			name: "RETRY_PERIOD negative",
			env:  map[string]string{"RETRY_PERIOD": "-2s"},
			want: []string{`RETRY_PERIOD="-2s"`, "must be greater than zero"},
		},
		{
			name: "LEASE_DURATION not whole seconds",
			env:  map[string]string{"LEASE_DURATION": "15500ms"},
			want: []string{`LEASE_DURATION="15500ms"`, "must be whole seconds"}, // as the user wrote it
		},
		{
			name: "LEASE_DURATION equal to RENEW_DEADLINE",
			env:  map[string]string{"LEASE_DURATION": "10s", "RENEW_DEADLINE": "10s"},
			want: []string{`LEASE_DURATION="10s"`, "must be greater than RENEW_DEADLINE (10s)"},
		},
		{
			name: "LEASE_DURATION below RENEW_DEADLINE",
			env:  map[string]string{"LEASE_DURATION": "5s"},
			want: []string{`LEASE_DURATION="5s"`, "must be greater than RENEW_DEADLINE (10s)"},
		},
		{
			name: "RENEW_DEADLINE exactly 1.2 x RETRY_PERIOD",
			env:  map[string]string{"RENEW_DEADLINE": "2400ms"},
			want: []string{`RENEW_DEADLINE="2400ms"`, "must be greater than 1.2 x RETRY_PERIOD (2s)"},
		},
		{
			name: "RENEW_DEADLINE below RETRY_PERIOD",
			env:  map[string]string{"RETRY_PERIOD": "12s"},
			want: []string{`RENEW_DEADLINE="10s"`, "must be greater than 1.2 x RETRY_PERIOD (12s)"},
		},
		{
			name: "LEASE_DURATION over an hour",
			env:  map[string]string{"LEASE_DURATION": "60m1s"},
			want: []string{`LEASE_DURATION="60m1s"`, "must be at most 1h0m0s"},
		},
		{
			// Stored as int32 seconds, this would wrap; doubled in /livez, overflow.
			name: "LEASE_DURATION beyond int32 seconds",
			env:  map[string]string{"LEASE_DURATION": "2562047h"},
			want: []string{`LEASE_DURATION="2562047h"`, "must be at most 1h0m0s"},
		},
		{
			name: "LEASE_DURATION beyond a Go duration",
			env:  map[string]string{"LEASE_DURATION": "2562048h"},
			want: []string{`LEASE_DURATION="2562048h"`, "must be a Go duration"},
		},
		{
			name:  "RENEW_DEADLINE over an hour",
			env:   map[string]string{"LEASE_DURATION": "2h", "RENEW_DEADLINE": "90m"},
			want:  []string{"must be at most 1h0m0s"},
			lines: 2, // both; neither is compared with the other
		},
		{
			name: "RETRY_PERIOD over an hour",
			env:  map[string]string{"RETRY_PERIOD": "3600001ms"},
			want: []string{`RETRY_PERIOD="3600001ms"`, "must be at most 1h0m0s"},
		},
		{
			name: "RENEW_DEADLINE plus RETRY_PERIOD over the step-down bound",
			env:  map[string]string{"LEASE_DURATION": "40s", "RENEW_DEADLINE": "27s", "RETRY_PERIOD": "1001ms"},
			want: []string{`RENEW_DEADLINE="27s"`, "plus RETRY_PERIOD (1.001s) must be at most 28s", "30s grace period"},
		},
		{
			name: "RENEW_DEADLINE within the hour but too long to step down",
			env:  map[string]string{"LEASE_DURATION": "1h", "RENEW_DEADLINE": "30m", "RETRY_PERIOD": "1m"},
			want: []string{`RENEW_DEADLINE="30m"`, "plus RETRY_PERIOD (1m0s) must be at most 28s"},
		},
		{
			name: "LOG_LEVEL unknown",
			env:  map[string]string{"LOG_LEVEL": "verbose"},
			want: []string{`LOG_LEVEL="verbose"`, "must be debug, info, warn or error"},
		},
		{
			name: "LOG_LEVEL wrong case",
			env:  map[string]string{"LOG_LEVEL": "INFO"},
			want: []string{`LOG_LEVEL="INFO"`, "must be debug, info, warn or error"},
		},
		{
			name: "LOG_FORMAT unknown",
			env:  map[string]string{"LOG_FORMAT": "yaml"},
			want: []string{`LOG_FORMAT="yaml"`, "must be text or json"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := minimalEnv()
			for _, k := range tt.unset {
				delete(env, k)
			}
			for k, v := range tt.env {
				env[k] = v
			}
			src := testSources(t)
			if tt.src != nil {
				tt.src(t, &src)
			}

			_, err := Load(lookupIn(env), src)
			if err == nil {
				t.Fatalf("Load() = nil error, want one containing %q", tt.want)
			}
			lines := errLines(err)
			wantLines := max(tt.lines, 1)
			if len(lines) != wantLines {
				t.Fatalf("Load() error has %d lines, want %d:\n%v", len(lines), wantLines, err)
			}
			for _, l := range lines {
				for _, w := range tt.want {
					if !strings.Contains(l, w) {
						t.Errorf("Load() error line %q, want it to contain %q", l, w)
					}
				}
			}
		})
	}
}

// TestLoadRefusesSymlinkedStatusFile: a status file that is a symbolic link
// is refused at start, naming the variable, its value and the rule.
func TestLoadRefusesSymlinkedStatusFile(t *testing.T) {
	t.Parallel()
	tmp := t.TempDir()
	target := filepath.Join(tmp, "target")
	writeFile(t, target, "")
	link := filepath.Join(tmp, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(tmp, "shared")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "leader_status")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{name: "STATUS_FILE", env: map[string]string{"STATUS_FILE": link},
			want: []string{fmt.Sprintf("STATUS_FILE=%q: ", link), "must not be a symbolic link", strconv.Quote(target)}},
		{name: "STATUS_DIR", env: map[string]string{"STATUS_DIR": link},
			want: []string{fmt.Sprintf("STATUS_DIR=%q: ", link), "must not be a symbolic link"}},
		{name: "both, equal", env: map[string]string{"STATUS_FILE": link, "STATUS_DIR": link},
			want: []string{fmt.Sprintf("STATUS_FILE=%q: ", link), "must not be a symbolic link"}},
		{name: "leader_status inside the directory", env: map[string]string{"STATUS_FILE": dir},
			want: []string{fmt.Sprintf("STATUS_FILE=%q: ", dir), strconv.Quote(filepath.Join(dir, "leader_status")), "must not be a symbolic link"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := minimalEnv()
			maps.Copy(env, tt.env)
			_, err := Load(lookupIn(env), testSources(t))
			if lines := errLines(err); len(lines) != 1 {
				t.Fatalf("Load() error = %v, want one line", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Load() error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestLoadNamesNamespaceFileInError(t *testing.T) {
	t.Parallel()
	env := minimalEnv()
	delete(env, "NAMESPACE")
	src := testSources(t)

	_, err := Load(lookupIn(env), src)
	if err == nil || !strings.Contains(err.Error(), src.NamespaceFile) {
		t.Fatalf("Load() error = %v, want it to name the namespace file %s", err, src.NamespaceFile)
	}
}

func TestLoadReportsEveryBadVariableOnce(t *testing.T) {
	t.Parallel()
	env := map[string]string{
		"LEASE_NAME":     "Bad_Name",
		"NAMESPACE":      "UPPER",
		"HEALTH_PORT":    "http",   // parse error: not also "must be a port number"
		"LEASE_DURATION": "soon",   // parse error: not also "greater than zero" or "greater than RENEW_DEADLINE"
		"RETRY_PERIOD":   "always", // parse error: not also "greater than zero" or the 1.2 x rule
		"LABEL_POD_ROLE": "maybe",
		"LOG_LEVEL":      "loud",
		"LOG_FORMAT":     "xml",
	}
	src := testSources(t)

	_, err := Load(lookupIn(env), src)
	if err == nil {
		t.Fatal("Load() = nil error, want every bad variable reported")
	}
	lines := errLines(err)
	want := []string{
		`LEASE_NAME="Bad_Name"`,
		`NAMESPACE="UPPER"`,
		`HEALTH_PORT="http": must be a whole number`,
		`LEASE_DURATION="soon": must be a Go duration`,
		`RETRY_PERIOD="always": must be a Go duration`,
		`LABEL_POD_ROLE="maybe": must be true or false`,
		`LOG_LEVEL="loud"`,
		`LOG_FORMAT="xml"`,
	}
	if len(lines) != len(want) {
		t.Errorf("Load() error has %d lines, want %d:\n%v", len(lines), len(want), err)
	}
	for _, w := range want {
		n := 0
		for _, l := range lines {
			if strings.Contains(l, w) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("Load() error has %d lines containing %q, want 1:\n%v", n, w, err)
		}
	}
	for _, rule := range []string{"must be a port number", "must be greater than zero", "must be greater than RENEW_DEADLINE", "1.2 x RETRY_PERIOD"} {
		if strings.Contains(err.Error(), rule) {
			t.Errorf("Load() error reports %q for a variable that did not parse:\n%v", rule, err)
		}
	}
}

func TestLoadDefaults(t *testing.T) {
	t.Parallel()
	src := testSources(t)

	got, err := Load(lookupIn(minimalEnv()), src)
	if err != nil {
		t.Fatalf("Load() error = %v", err)
	}
	want := Config{
		LeaseName:        "my-lease",
		Namespace:        "default",
		Identity:         "pod-0",
		HealthPort:       8080,
		RoleLabelKey:     "role",
		Events:           true,
		HandoverOnDelete: true,
		LeaseDuration:    15 * time.Second,
		RenewDeadline:    10 * time.Second,
		RetryPeriod:      2 * time.Second,
		LogLevel:         "info",
		LogFormat:        "text",

		CommandStopGrace: 10 * time.Second,
		AppHealth: AppHealth{FileMaxAge: 10 * time.Second, Period: 2 * time.Second, Timeout: time.Second,
			Failures: 3, Successes: 2, MinTerm: 30 * time.Second},

		Control: Control{ControlSocket: "/tmp/leader-elector.sock"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Load() =\n%+v\nwant\n%+v", got, want)
	}
}

func TestLoadAcceptsValidInput(t *testing.T) {
	t.Parallel()
	failingHostname := func(t *testing.T, s *Sources) {
		s.Hostname = func() (string, error) {
			t.Error("Hostname called although IDENTITY is set")
			return "", errors.New("unexpected call")
		}
	}
	tests := []struct {
		name  string
		env   map[string]string
		unset []string
		src   func(t *testing.T, s *Sources)
		check func(t *testing.T, c Config)
	}{
		{
			name:  "namespace from POD_NAMESPACE",
			unset: []string{"NAMESPACE"},
			env:   map[string]string{"POD_NAMESPACE": "pod-ns"},
			src: func(t *testing.T, s *Sources) {
				writeFile(t, s.NamespaceFile, "file-ns\n")
			},
			check: wantField("Namespace", func(c Config) any { return c.Namespace }, "pod-ns"),
		},
		{
			name:  "namespace from file, trimmed",
			unset: []string{"NAMESPACE"},
			src: func(t *testing.T, s *Sources) {
				writeFile(t, s.NamespaceFile, " file-ns\n")
			},
			check: wantField("Namespace", func(c Config) any { return c.Namespace }, "file-ns"),
		},
		{
			name: "NAMESPACE wins over POD_NAMESPACE",
			env:  map[string]string{"NAMESPACE": "env-ns", "POD_NAMESPACE": "pod-ns"},
			check: wantField("Namespace", func(c Config) any {
				return c.Namespace
			}, "env-ns"),
		},
		{
			name:  "IDENTITY wins over hostname",
			env:   map[string]string{"IDENTITY": "me"},
			src:   failingHostname,
			check: wantField("Identity", func(c Config) any { return c.Identity }, "me"),
		},
		{
			name:  "STATUS_FILE and STATUS_DIR equal",
			env:   map[string]string{"STATUS_FILE": "/x", "STATUS_DIR": "/x"},
			check: wantField("StatusFile", func(c Config) any { return c.StatusFile }, "/x"),
		},
		{
			name:  "EVENTS off",
			env:   map[string]string{"EVENTS": "false"},
			check: wantField("Events", func(c Config) any { return c.Events }, false),
		},
		{
			name:  "POD_UID",
			env:   map[string]string{"POD_UID": "0b0e6a1c-8f4e-4c3e-9a57-3f1d2b7c9e10"},
			check: wantField("PodUID", func(c Config) any { return c.PodUID }, "0b0e6a1c-8f4e-4c3e-9a57-3f1d2b7c9e10"),
		},
		{
			name:  "HEALTH_PORT highest",
			env:   map[string]string{"HEALTH_PORT": "65535"},
			check: wantField("HealthPort", func(c Config) any { return c.HealthPort }, 65535),
		},
		{
			name:  "HEALTH_PORT with a leading zero is decimal",
			env:   map[string]string{"HEALTH_PORT": "010"},
			check: wantField("HealthPort", func(c Config) any { return c.HealthPort }, 10),
		},
		{
			name:  "PROBE_ADDRESS as naiserator sets it",
			env:   map[string]string{"PROBE_ADDRESS": "0.0.0.0:4041"},
			check: wantField("HealthAddress", func(c Config) any { return c.HealthAddress() }, "0.0.0.0:4041"),
		},
		{
			name:  "PROBE_ADDRESS on IPv6 loopback",
			env:   map[string]string{"PROBE_ADDRESS": "[::1]:8080"},
			check: wantField("HealthAddress", func(c Config) any { return c.HealthAddress() }, "[::1]:8080"),
		},
		{
			name:  "PROBE_ADDRESS with a host name",
			env:   map[string]string{"PROBE_ADDRESS": "localhost:4041"},
			check: wantField("HealthAddress", func(c Config) any { return c.HealthAddress() }, "localhost:4041"),
		},
		{
			name:  "PROBE_ADDRESS empty is unset",
			env:   map[string]string{"PROBE_ADDRESS": "", "HEALTH_PORT": "9000"},
			check: wantField("HealthAddress", func(c Config) any { return c.HealthAddress() }, ":9000"),
		},
		{
			name:  "PROBE_ADDRESS agrees with HEALTH_PORT",
			env:   map[string]string{"PROBE_ADDRESS": "0.0.0.0:9000", "HEALTH_PORT": "9000"},
			check: wantField("HealthAddress", func(c Config) any { return c.HealthAddress() }, "0.0.0.0:9000"),
		},
		{
			name:  "PROBE_ADDRESS with the default HEALTH_PORT unset",
			env:   map[string]string{"PROBE_ADDRESS": "127.0.0.1:9000"},
			check: wantField("HealthAddress", func(c Config) any { return c.HealthAddress() }, "127.0.0.1:9000"),
		},
		{
			name:  "HEALTH_PORT alone",
			env:   map[string]string{"HEALTH_PORT": "9000"},
			check: wantField("HealthAddress", func(c Config) any { return c.HealthAddress() }, ":9000"),
		},
		{
			name:  "METRICS_ADDRESS on all interfaces",
			env:   map[string]string{"METRICS_ADDRESS": ":9090"},
			check: wantField("MetricsAddr", func(c Config) any { return c.MetricsAddr }, ":9090"),
		},
		{
			name:  "METRICS_ADDRESS on IPv6 loopback",
			env:   map[string]string{"METRICS_ADDRESS": "[::1]:9090"},
			check: wantField("MetricsAddr", func(c Config) any { return c.MetricsAddr }, "[::1]:9090"),
		},
		{
			name:  "METRICS_ADDRESS empty is the health port",
			env:   map[string]string{"METRICS_ADDRESS": ""},
			check: wantField("MetricsAddr", func(c Config) any { return c.MetricsAddr }, ""),
		},
		{
			name:  "LABEL_POD_ROLE with POD_NAME",
			env:   map[string]string{"LABEL_POD_ROLE": "true", "POD_NAME": "pod-0"},
			check: wantField("LabelPodRole", func(c Config) any { return c.LabelPodRole }, true),
		},
		{
			name:  "HEALTH_STREAMS",
			env:   map[string]string{"HEALTH_STREAMS": "true"},
			check: wantField("HealthStreams", func(c Config) any { return c.HealthStreams }, true),
		},
		{
			name:  "HEALTH_STREAMS off by default",
			env:   map[string]string{},
			check: wantField("HealthStreams", func(c Config) any { return c.HealthStreams }, false),
		},
		{
			name:  "ROLE_LABEL_KEY with prefix",
			env:   map[string]string{"ROLE_LABEL_KEY": "example.com/role"},
			check: wantField("RoleLabelKey", func(c Config) any { return c.RoleLabelKey }, "example.com/role"),
		},
		{
			name:  "PEER_SELECTOR set-based",
			env:   map[string]string{"PEER_SELECTOR": "app in (a,b),tier!=db"},
			check: wantField("PeerSelector", func(c Config) any { return c.PeerSelector }, "app in (a,b),tier!=db"),
		},
		{
			name:  "PEER_SELECTOR parsed once",
			env:   map[string]string{"PEER_SELECTOR": "app=a"},
			check: wantField("Peers", func(c Config) any { return c.Peers.String() }, "app=a"),
		},
		{
			name:  "LEASE_DURATION just above RENEW_DEADLINE",
			env:   map[string]string{"LEASE_DURATION": "11s"},
			check: wantField("LeaseDuration", func(c Config) any { return c.LeaseDuration }, 11*time.Second),
		},
		{
			name:  "RENEW_DEADLINE just above 1.2 x RETRY_PERIOD",
			env:   map[string]string{"RENEW_DEADLINE": "2401ms"},
			check: wantField("RenewDeadline", func(c Config) any { return c.RenewDeadline }, 2401*time.Millisecond),
		},
		{
			name:  "LEASE_DURATION of an hour",
			env:   map[string]string{"LEASE_DURATION": "1h"},
			check: wantField("LeaseDuration", func(c Config) any { return c.LeaseDuration }, time.Hour),
		},
		{
			name:  "RENEW_DEADLINE plus RETRY_PERIOD at the step-down bound",
			env:   map[string]string{"LEASE_DURATION": "40s", "RENEW_DEADLINE": "26s", "RETRY_PERIOD": "2s"},
			check: wantField("RenewDeadline", func(c Config) any { return c.RenewDeadline }, 26*time.Second),
		},
		{
			name:  "LOG_LEVEL debug",
			env:   map[string]string{"LOG_LEVEL": "debug"},
			check: wantField("LogLevel", func(c Config) any { return c.LogLevel }, "debug"),
		},
		{
			name:  "LOG_FORMAT json",
			env:   map[string]string{"LOG_FORMAT": "json"},
			check: wantField("LogFormat", func(c Config) any { return c.LogFormat }, "json"),
		},
		{
			name:  "STATUS_ENDPOINT on all interfaces",
			env:   map[string]string{"STATUS_ENDPOINT": ":9999"},
			check: wantField("StatusEndpoint", func(c Config) any { return c.StatusEndpoint }, ":9999"),
		},
		{
			name:  "STATUS_ENDPOINT on one address",
			env:   map[string]string{"STATUS_ENDPOINT": "[::1]:9999"},
			check: wantField("StatusEndpoint", func(c Config) any { return c.StatusEndpoint }, "[::1]:9999"),
		},
		{
			name:  "COMMAND_STOP_GRACE",
			env:   map[string]string{"COMMAND_STOP_GRACE": "1h"},
			check: wantField("CommandStopGrace", func(c Config) any { return c.CommandStopGrace }, time.Hour),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := minimalEnv()
			for _, k := range tt.unset {
				delete(env, k)
			}
			for k, v := range tt.env {
				env[k] = v
			}
			src := testSources(t)
			if tt.src != nil {
				tt.src(t, &src)
			}

			c, err := Load(lookupIn(env), src)
			if err != nil {
				t.Fatalf("Load() error = %v", err)
			}
			tt.check(t, c)
		})
	}
}

func wantField(name string, get func(Config) any, want any) func(*testing.T, Config) {
	return func(t *testing.T, c Config) {
		t.Helper()
		if got := get(c); got != want {
			t.Errorf("Load().%s = %v, want %v", name, got, want)
		}
	}
}

func TestUsageListsEveryVariable(t *testing.T) {
	t.Parallel()
	vars := Variables()
	var names []string
	for _, v := range vars {
		names = append(names, v.Name)
	}
	wantNames := []string{
		"LEASE_NAME", "NAMESPACE", "POD_NAMESPACE", "IDENTITY", "STATUS_FILE", "STATUS_DIR",
		"HEALTH_PORT", "PROBE_ADDRESS", "LABEL_POD_ROLE", "POD_NAME", "POD_IP", "ROLE_LABEL_KEY", "PEER_SELECTOR", "HANDOVER_ON_DELETE",
		"LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD", "KUBECONFIG", "LOG_LEVEL", "LOG_FORMAT",
		"LEADER_HTTP_ADDRESS", "HEALTH_STREAMS",
		"STATUS_ENDPOINT", "COMMAND_STOP_GRACE",
		"SERVICE_NAME", "SERVICE_NAMESPACE", "SERVICE_PORTS", "NODE_NAME",
		"METRICS_ADDRESS",
		"POD_UID", "EVENTS",
		"APP_HEALTH_URL", "APP_HEALTH_FILE", "APP_HEALTH_FILE_MAX_AGE", "APP_HEALTH_PERIOD", "APP_HEALTH_TIMEOUT",
		"APP_HEALTH_FAILURES", "APP_HEALTH_SUCCESSES", "APP_HEALTH_MIN_TERM",
		"CONTROL_SOCKET",
	}
	if !slices.Equal(names, wantNames) {
		t.Errorf("Variables() names = %v, want %v", names, wantNames)
	}

	var buf bytes.Buffer
	if err := Usage(&buf); err != nil {
		t.Fatalf("Usage() error = %v", err)
	}
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	if len(lines) != len(vars)+1 {
		t.Fatalf("Usage() wrote %d lines, want a header and %d variables:\n%s", len(lines), len(vars), buf.String())
	}
	if f := strings.Fields(lines[0]); !slices.Equal(f, []string{"VARIABLE", "DEFAULT", "MEANING"}) {
		t.Errorf("Usage() header = %q", lines[0])
	}
	for i, v := range vars {
		t.Run(v.Name, func(t *testing.T) {
			if v.Description == "" {
				t.Errorf("%s has no description", v.Name)
			}
			line := lines[i+1]
			fields := strings.Fields(line)
			if len(fields) < 2 || fields[0] != v.Name {
				t.Fatalf("Usage() line %d = %q, want it to start with %s", i+1, line, v.Name)
			}
			wantDefault := v.Default
			if v.Required {
				wantDefault = "(required)"
			}
			if wantDefault != "" && fields[1] != wantDefault {
				t.Errorf("Usage() line %q: default = %q, want %q", line, fields[1], wantDefault)
			}
			if !strings.HasSuffix(line, v.Description) {
				t.Errorf("Usage() line %q does not end with the description %q", line, v.Description)
			}
		})
	}

	// The default status path is status.DefaultPath, written once.
	if d := vars[4]; d.Name != "STATUS_FILE" || !strings.HasSuffix(d.Description, "(default "+status.DefaultPath+")") {
		t.Errorf("Variables() %s description = %q, want it to end with the default %s", d.Name, d.Description, status.DefaultPath)
	}

	defaults := map[string]string{
		"HEALTH_PORT": "8080", "LABEL_POD_ROLE": "false", "HEALTH_STREAMS": "false", "ROLE_LABEL_KEY": "role", "EVENTS": "true", "HANDOVER_ON_DELETE": "true",
		"LEASE_DURATION": "15s", "RENEW_DEADLINE": "10s", "RETRY_PERIOD": "2s",
		"LOG_LEVEL": "info", "LOG_FORMAT": "text", "COMMAND_STOP_GRACE": "10s",
		"APP_HEALTH_FILE_MAX_AGE": "10s", "APP_HEALTH_PERIOD": "2s", "APP_HEALTH_TIMEOUT": "1s",
		"APP_HEALTH_FAILURES": "3", "APP_HEALTH_SUCCESSES": "2", "APP_HEALTH_MIN_TERM": "30s",
	}
	for _, v := range vars {
		if got, want := v.Default, defaults[v.Name]; got != want {
			t.Errorf("Variables() %s default = %q, want %q", v.Name, got, want)
		}
		if got, want := v.Required, v.Name == "LEASE_NAME"; got != want {
			t.Errorf("Variables() %s required = %v, want %v", v.Name, got, want)
		}
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
