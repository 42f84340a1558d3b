package compat

import (
	"errors"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/internal/config"
)

// FuzzTranslate: arbitrary arguments (NUL-separated) and environment
// (NAME=value lines). Translate and config.Load never panic, and what they
// refuse is refused in lines that each start with the name of a flag or a
// variable, or are pflag's own (which name the flag).
func FuzzTranslate(f *testing.F) {
	for _, seed := range []struct{ args, env string }{
		{strings.Join(naiserator, "\x00"), "ELECTOR_LOG_FORMAT=json"},
		{"", "ELECTOR_ELECTION=myapp\nELECTOR_ELECTION_NAMESPACE=ns\nELECTOR_HTTP=localhost:4040"},
		{"--election=example\x00--http=0.0.0.0:4040\x00--id=x\x00--ttl=10s", "POD_NAMESPACE=ns"},
		{"--election=a\x00--ttl=40s\x00--probe-address=:1", ""},
		{"mycmd\x00arg", "K8S_AWAIT_ELECTION_ENABLED=false\nK8S_AWAIT_ELECTION_NAME=e\nK8S_AWAIT_ELECTION_LOCK_NAME=l\nK8S_AWAIT_ELECTION_LOCK_NAMESPACE=ns\nK8S_AWAIT_ELECTION_IDENTITY=me\nK8S_AWAIT_ELECTION_LEASE_DURATION=5"},
		{"--", "LEASE_NAME=x"},
		{"--election=a\x00--election-namespace=ns", "LEASE_NAME=b\nHEALTH_PORT=http\nELECTOR_LOG_LEVEL=warning"},
	} {
		f.Add(seed.args, seed.env)
	}
	f.Fuzz(func(t *testing.T, argList, envList string) {
		var args []string
		if argList != "" {
			args = strings.Split(argList, "\x00")
		}
		env := map[string]string{}
		for _, line := range strings.Split(envList, "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				env[k] = v
			}
		}
		tr, err := Translate(args, environment(env))
		if errors.Is(err, ErrHelp) {
			return
		}
		if err == nil && tr.FrontEnd == Exec {
			if len(tr.Command) == 0 {
				t.Fatalf("Translate(%q) = exec of no command", args)
			}
			return
		}
		if err == nil {
			_, err = config.Load(tr.Lookup, sources(t))
			err = tr.Explain(err)
		}
		if err == nil {
			return
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			if !namesSomething(line) {
				t.Fatalf("Translate(%q, %q): error line %q names no flag or variable; whole error:\n%v", args, env, line, err)
			}
		}
	})
}

// namesSomething says whether an error line starts with a flag's or a
// variable's name, or is one of pflag's messages about a flag.
func namesSomething(line string) bool {
	for _, p := range []string{"--", `"--"`, "unknown flag", "unknown shorthand flag", "flag needs an argument", "bad flag syntax",
		"invalid argument", "unexpected argument", awaitPrefix, "ELECTOR_"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	for _, v := range config.Variables() {
		if strings.HasPrefix(line, v.Name+"=") || strings.HasPrefix(line, v.Name+" ") {
			return true
		}
	}
	return false
}
