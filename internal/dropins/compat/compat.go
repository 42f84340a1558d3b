// Package compat translates the ways the originals are started into this
// sidecar's own variables, before anything runs, so that config.Load stays
// the one place that validates a setting:
//
//   - nais/elector: its flags (--election, --election-namespace, --http,
//     --probe-address, --metrics-address, --log-format, --log-level) and the
//     same as ELECTOR_<FLAG> variables (nais.go);
//   - kubernetes/contrib's leader-elector (gcr.io/google_containers/
//     leader-elector): its flags --election, --election-namespace, --id,
//     --ttl, --http and --use-cluster-credentials (gcr.go);
//   - LINBIT k8s-await-election: K8S_AWAIT_ELECTION_* and the command to run
//     as the arguments (awaitelection.go).
//
// Translate picks the front end from the arguments and the environment and
// returns a Translation: an environment in our names for config.Load, the
// command for the gatekeeper, and how to name a bad value the way the user
// wrote it.
package compat

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/internal/config"
)

// FrontEnd says which way of starting the sidecar a Translation came from.
type FrontEnd string

// The front ends.
const (
	// Own is this sidecar's own variables, and `-- COMMAND...` for the
	// gatekeeper.
	Own FrontEnd = "leader-elector"
	// NAIS is nais/elector's flags and ELECTOR_* variables.
	NAIS FrontEnd = "nais/elector"
	// GCR is kubernetes/contrib's leader-elector's flags.
	GCR FrontEnd = "contrib leader-elector"
	// AwaitElection is k8s-await-election with K8S_AWAIT_ELECTION_ENABLED
	// set: the command runs under the election (the gatekeeper).
	AwaitElection FrontEnd = "k8s-await-election"
	// Exec is k8s-await-election without K8S_AWAIT_ELECTION_ENABLED: the
	// command is executed directly, with no election and no Kubernetes API.
	Exec FrontEnd = "k8s-await-election without election"
)

// ErrHelp is returned by Translate for -h or --help among the flags.
var ErrHelp = errors.New("help requested")

// Translation is one way of starting the sidecar, in our names.
type Translation struct {
	// FrontEnd is the way the sidecar was started.
	FrontEnd FrontEnd
	// Command is the command to run: under the election (the gatekeeper),
	// or, for Exec, directly. Empty for a plain sidecar.
	Command []string
	// Election is K8S_AWAIT_ELECTION_NAME, which the original used in logs
	// only.
	Election string
	// Warnings are things the user should know, such as an
	// K8S_AWAIT_ELECTION_ENABLED of "false" that enables the election.
	Warnings []string

	env     map[string]string // our variables, as translated
	from    map[string]origin // for each of env: what the user wrote
	environ func(string) (string, bool)
}

// origin is a setting as the user wrote it: a flag ("--election") or a
// variable, and its value.
type origin struct{ name, value string }

func (o origin) String() string { return o.name + "=" + strconv.Quote(o.value) }

// Lookup is like os.LookupEnv for config.Load: the translated variables,
// then the environment. Own variables the user set alongside an original's
// flags still apply, unless they contradict one (Translate refuses that).
func (t Translation) Lookup(name string) (string, bool) {
	if v, ok := t.env[name]; ok {
		return v, true
	}
	if t.environ == nil {
		return "", false
	}
	return t.environ(name)
}

// Env returns the variables the translation sets, in our names.
func (t Translation) Env() map[string]string { return maps.Clone(t.env) }

// Explain rewrites an error of config.Load so that each line names the flag
// or variable the user wrote, with its value, instead of ours: a bad
// --election="My_App" is reported as that, and not as LEASE_NAME. Where the
// value was translated, ours follows: K8S_AWAIT_ELECTION_LEASE_DURATION="5"
// (as LEASE_DURATION="5s").
func (t Translation) Explain(err error) error {
	if err == nil || len(t.from) == 0 {
		return err
	}
	names := slices.Sorted(maps.Keys(t.from))
	lines := strings.Split(err.Error(), "\n")
	for i, line := range lines {
		for _, name := range names {
			o := t.from[name]
			ours := origin{name, t.env[name]}
			theirs := o.String()
			if o.value != ours.value {
				theirs += " (as " + ours.String() + ")"
			}
			line = replaceName(line, ours.String(), theirs)
		}
		lines[i] = line
	}
	return errors.New(strings.Join(lines, "\n"))
}

// replaceName replaces old in line where it starts a name: at the start or
// after a character that cannot be part of a variable's name, so that
// NAMESPACE="x" is not found inside POD_NAMESPACE="x".
func replaceName(line, old, new string) string {
	var b strings.Builder
	for {
		i := strings.Index(line, old)
		if i < 0 {
			b.WriteString(line)
			return b.String()
		}
		if i > 0 && isNameByte(line[i-1]) {
			b.WriteString(line[:i+1])
			line = line[i+1:]
			continue
		}
		b.WriteString(line[:i])
		b.WriteString(new)
		line = line[i+len(old):]
	}
}

func isNameByte(c byte) bool {
	return c == '_' || c == '-' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// Log logs how the sidecar was started, when not in its own way, and the
// warnings.
func (t Translation) Log(log *slog.Logger) {
	if t.FrontEnd != Own {
		attrs := []any{"front_end", string(t.FrontEnd), "variables", t.env}
		if t.Election != "" {
			attrs = append(attrs, "election", t.Election)
		}
		if len(t.Command) > 0 {
			attrs = append(attrs, "command", t.Command)
		}
		log.Info("started as "+string(t.FrontEnd)+" is; its settings translate to these variables", attrs...)
	}
	for _, w := range t.Warnings {
		log.Warn(w)
	}
}

// Translate picks the front end and translates it:
//
//   - K8S_AWAIT_ELECTION_ENABLED set non-empty: k8s-await-election; the
//     arguments are the command (AwaitElection);
//   - a first argument that is not a flag, or any K8S_AWAIT_ELECTION_*
//     variable without ENABLED: k8s-await-election without election (Exec);
//   - flags: nais/elector's or contrib's leader-elector's (NAIS, GCR);
//   - no arguments but ELECTOR_* variables of nais/elector's flags: NAIS;
//   - `-- COMMAND...`: our own variables, and the command for the gatekeeper;
//   - nothing of these: our own variables (Own).
//
// environ is like os.LookupEnv. Errors are one line per problem, each naming
// the flags or variables and their values; they mean exit code 2.
func Translate(args []string, environ func(string) (string, bool)) (Translation, error) {
	_, awaitSet := firstSet(environ, awaitVariables)
	switch {
	case nonEmpty(environ, awaitEnabled) != "":
		return awaitElection(args, environ)
	case len(args) > 0 && args[0] == "--" && !awaitSet:
		if len(args) == 1 {
			return Translation{}, errors.New(`"--" must be followed by the command to run under the election`)
		}
		return Translation{FrontEnd: Own, Command: slices.Clone(args[1:]), environ: environ}, nil
	case len(args) > 0 && !isFlag(args[0]), len(args) == 0 && awaitSet:
		return awaitElection(args, environ)
	case len(args) > 0:
		return flags(args, environ)
	case naisEnvSet(environ) != "":
		return flags(nil, environ)
	}
	return Translation{FrontEnd: Own, environ: environ}, nil
}

func isFlag(arg string) bool { return len(arg) > 1 && arg[0] == '-' }

// nonEmpty is the value of a variable, "" when it is unset or empty: the
// originals read their variables with os.Getenv (k8s-await-election) or
// viper without AllowEmptyEnv (nais/elector), to which an empty variable is
// an unset one.
func nonEmpty(environ func(string) (string, bool), name string) string {
	v, _ := environ(name)
	return v
}

// firstSet returns the first of names that is set, even empty.
func firstSet(environ func(string) (string, bool), names []string) (string, bool) {
	for _, n := range names {
		if _, ok := environ(n); ok {
			return n, true
		}
	}
	return "", false
}

// builder collects one front end's settings in our names, and the
// conflicts among them and with our own variables.
type builder struct {
	environ func(string) (string, bool)
	env     map[string]string
	from    map[string]origin
	errs    []error
}

func newBuilder(environ func(string) (string, bool)) *builder {
	return &builder{environ: environ, env: map[string]string{}, from: map[string]origin{}}
}

// set gives our variable name the value, which the user wrote as o. Two
// settings that disagree, the user's own variable among them, are an error
// naming both.
func (b *builder) set(name, value string, o origin) {
	if prev, ok := b.from[name]; ok {
		if !same(b.env[name], value) {
			b.errs = append(b.errs, conflict(prev, o))
		}
		return
	}
	if v, ok := b.environ(name); ok && !same(v, value) {
		b.errs = append(b.errs, conflict(o, origin{name, v}))
		return
	}
	b.env[name] = value
	b.from[name] = o
}

// given says whether name was set by the front end or by the user.
func (b *builder) given(name string) bool {
	if _, ok := b.env[name]; ok {
		return true
	}
	_, ok := b.environ(name)
	return ok
}

// setDefault gives name the front end's default unless it, or one of
// unless (other names of the same setting), is given.
func (b *builder) setDefault(name, value string, unless ...string) {
	for _, n := range append([]string{name}, unless...) {
		if b.given(n) {
			return
		}
	}
	b.env[name] = value
}

func (b *builder) fail(format string, args ...any) {
	b.errs = append(b.errs, fmt.Errorf(format, args...))
}

// takeNothingMore turns off what the elector a drop-in stands for did not
// have, unless the user set it: the status file and the control socket
// (files), and with health, the health endpoints (a port). A drop-in binds
// the ports and touches the files its original did, no others.
func (b *builder) takeNothingMore(health bool) {
	b.setDefault("STATUS_FILE", config.Off, "STATUS_DIR")
	b.setDefault("CONTROL_SOCKET", config.ControlSocketOff)
	// The pod watch of the handover on deletion needs permissions (list
	// and watch on pods) that the original's RBAC does not grant.
	b.setDefault("HANDOVER_ON_DELETE", "false")
	if health {
		b.setDefault("PROBE_ADDRESS", config.Off, "HEALTH_PORT")
	}
}

func (b *builder) translation(fe FrontEnd) (Translation, error) {
	if err := errors.Join(b.errs...); err != nil {
		return Translation{}, err
	}
	return Translation{FrontEnd: fe, env: b.env, from: b.from, environ: b.environ}, nil
}

// same says whether two values of one setting agree: equal, or equal
// durations (10s and 10000ms).
func same(a, b string) bool {
	if a == b {
		return true
	}
	da, errA := time.ParseDuration(a)
	db, errB := time.ParseDuration(b)
	return errA == nil && errB == nil && da == db
}

func conflict(a, b origin) error {
	return fmt.Errorf("%s and %s: set only one; they name the same setting", a, b)
}

// Usage writes the front ends, briefly, for --help.
func Usage(w io.Writer) error {
	_, err := io.WriteString(w, `Also started as the electors it replaces are (see docs/migrating.md):
  nais/elector             --election=NAME --election-namespace=NS [--http=ADDR --probe-address=ADDR
                           --metrics-address=ADDR --log-format=text|json --log-level=LEVEL],
                           or the same as ELECTOR_ELECTION, ELECTOR_ELECTION_NAMESPACE, ELECTOR_HTTP, ...
  contrib leader-elector   --election=NAME [--election-namespace=NS --id=ID --ttl=10s --http=ADDR
                           --use-cluster-credentials]
  k8s-await-election       K8S_AWAIT_ELECTION_ENABLED=1 K8S_AWAIT_ELECTION_LOCK_NAME=... leader-elector COMMAND [ARG...]:
                           the command runs on the leader only; without K8S_AWAIT_ELECTION_ENABLED
                           it is executed directly
  gatekeeper, own names    leader-elector -- COMMAND [ARG...]
`)
	return err
}
