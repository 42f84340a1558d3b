package cli

import (
	"bytes"
	"flag"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantPos []string
		wantNS  string
		wantT   time.Duration
		wantErr string
	}{
		{name: "nothing", args: nil},
		{name: "flags first", args: []string{"-n", "prod", "lock"}, wantPos: []string{"lock"}, wantNS: "prod"},
		{name: "flags after the argument", args: []string{"lock", "--namespace=prod", "--timeout", "2s"}, wantPos: []string{"lock"}, wantNS: "prod", wantT: 2 * time.Second},
		{name: "two arguments", args: []string{"a", "-n", "x", "b"}, wantPos: []string{"a", "b"}, wantNS: "x"},
		{name: "after -- all positional", args: []string{"-n", "x", "--", "-n", "y"}, wantPos: []string{"-n", "y"}, wantNS: "x"},
		{name: "bad duration", args: []string{"--timeout", "1 minute"}, wantErr: `invalid value "1 minute" for flag -timeout: must be a Go duration`},
		{name: "missing value", args: []string{"lock", "-n"}, wantErr: "flag needs an argument: -n"},
		{name: "unknown flag", args: []string{"--bogus"}, wantErr: "flag provided but not defined: -bogus"},
		{name: "help", args: []string{"lock", "-h"}, wantErr: flag.ErrHelp.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := NewFlagSet("test")
			var ns string
			var d Duration
			fs.StringVar(&ns, "namespace", "", "")
			fs.StringVar(&ns, "n", "", "")
			fs.Var(&d, "timeout", "")
			pos, err := Parse(fs, tt.args)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Parse(%q) error = %v, want %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse(%q) error = %v", tt.args, err)
			}
			if !slices.Equal(pos, tt.wantPos) || ns != tt.wantNS || d.D != tt.wantT {
				t.Errorf("Parse(%q) = %q, namespace %q, timeout %s; want %q, %q, %s", tt.args, pos, ns, d.D, tt.wantPos, tt.wantNS, tt.wantT)
			}
		})
	}
}

func TestRun(t *testing.T) {
	var stdout, stderr bytes.Buffer
	fs := NewFlagSet("test")
	fs.Bool("x", false, "the x flag")
	if _, code, ok := Run(fs, []string{"--help"}, "Usage: test\n", &stdout, &stderr); ok || code != ExitOK {
		t.Errorf("--help: ok %v, code %d; want false, %d", ok, code, ExitOK)
	}
	if !strings.Contains(stdout.String(), "Usage: test") || !strings.Contains(stdout.String(), "the x flag") || stderr.Len() > 0 {
		t.Errorf("--help: stdout %q, stderr %q; want the usage and the flags on stdout", stdout.String(), stderr.String())
	}
	stdout.Reset()
	fs = NewFlagSet("test")
	if _, code, ok := Run(fs, []string{"--y"}, "Usage: test\n", &stdout, &stderr); ok || code != ExitUsage {
		t.Errorf("--y: ok %v, code %d; want false, %d", ok, code, ExitUsage)
	}
	if got := stderr.String(); got != "leader-elector test: flag provided but not defined: -y (see --help)\n" || stdout.Len() > 0 {
		t.Errorf("--y: stderr %q, stdout %q; want one line on stderr", got, stdout.String())
	}
}
