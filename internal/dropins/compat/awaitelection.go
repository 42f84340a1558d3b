package compat

// LINBIT k8s-await-election (main.go, pkg/consts/consts.go), as its users
// start it: the binary is the image's entrypoint and the arguments are the
// command to run, with no "--":
//
//	K8S_AWAIT_ELECTION_ENABLED=1 K8S_AWAIT_ELECTION_NAME=... leader-elector my-singleton-server arg...
//
// Any non-empty K8S_AWAIT_ELECTION_ENABLED enables the election, "false"
// too, as there (a warning says so). Without it, the command is executed
// directly and no Kubernetes API is touched. With it, NAME (logs only),
// LOCK_NAME, LOCK_NAMESPACE and IDENTITY are required, as there; an empty
// variable counts as unset (os.Getenv). The timings are whole seconds
// (default 15, 10 and 2, as ours).

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/config"
)

const (
	awaitPrefix  = "K8S_AWAIT_ELECTION_"
	awaitEnabled = awaitPrefix + "ENABLED"
	awaitName    = awaitPrefix + "NAME"
)

// awaitVar is a variable of k8s-await-election and ours for it.
type awaitVar struct {
	name, ours string
	required   bool
	seconds    bool // integer seconds
	what       string
}

var awaitVars = []awaitVar{
	{name: awaitPrefix + "LOCK_NAME", ours: "LEASE_NAME", required: true, what: "the name of the Lease"},
	{name: awaitPrefix + "LOCK_NAMESPACE", ours: "NAMESPACE", required: true, what: "the namespace of the Lease"},
	{name: awaitPrefix + "IDENTITY", ours: "IDENTITY", required: true, what: "this replica's identity, such as the pod name"},
	{name: awaitPrefix + "STATUS_ENDPOINT", ours: "STATUS_ENDPOINT"},
	{name: awaitPrefix + "SERVICE_NAME", ours: "SERVICE_NAME"},
	{name: awaitPrefix + "SERVICE_NAMESPACE", ours: "SERVICE_NAMESPACE"},
	{name: awaitPrefix + "SERVICE_PORTS_JSON", ours: "SERVICE_PORTS"},
	{name: awaitPrefix + "POD_IP", ours: "POD_IP"},
	{name: awaitPrefix + "NODE_NAME", ours: "NODE_NAME"},
	{name: awaitPrefix + "LEASE_DURATION", ours: "LEASE_DURATION", seconds: true},
	{name: awaitPrefix + "RENEW_DEADLINE", ours: "RENEW_DEADLINE", seconds: true},
	{name: awaitPrefix + "RETRY_PERIOD", ours: "RETRY_PERIOD", seconds: true},
}

// awaitVariables are all of k8s-await-election's variables.
var awaitVariables = func() []string {
	names := []string{awaitEnabled, awaitName}
	for _, v := range awaitVars {
		names = append(names, v.name)
	}
	return names
}()

func awaitElection(args []string, environ func(string) (string, bool)) (Translation, error) {
	command := args
	if len(command) > 0 && command[0] == "--" {
		command = command[1:]
	}
	command = slices.Clone(command)
	enabled := nonEmpty(environ, awaitEnabled)
	if enabled == "" {
		return unelected(command, environ)
	}
	en := origin{awaitEnabled, enabled}
	switch {
	case len(command) == 0:
		return Translation{}, fmt.Errorf("%s: the arguments must be the command to run on the leader; none is given", en)
	case isFlag(command[0]):
		return Translation{}, fmt.Errorf("%s and the flag %q: with %s the arguments are the command to run, not flags", en, command[0], awaitEnabled)
	}
	if v := naisEnvSet(environ); v != "" {
		return Translation{}, fmt.Errorf("%s and %s: the first is k8s-await-election's, the second nais/elector's; use one of them", en, origin{v, nonEmpty(environ, v)})
	}
	b := newBuilder(environ)
	for _, v := range awaitVars {
		val := nonEmpty(environ, v.name)
		switch {
		case val == "" && v.required && !b.given(v.ours):
			b.fail("%s is required with %s: %s", v.name, awaitEnabled, v.what)
		case val == "":
		case v.seconds:
			if d, rule := wholeSeconds(val); rule != "" {
				b.fail("%s: %s", origin{v.name, val}, rule)
			} else {
				b.set(v.ours, d.String(), origin{v.name, val})
			}
		default:
			b.set(v.ours, val, origin{v.name, val})
		}
	}
	if nonEmpty(environ, awaitName) == "" {
		b.fail("%s is required with %s: the name of the election, used in logs", awaitName, awaitEnabled)
	}
	svc := awaitPrefix + "SERVICE_NAME"
	if nonEmpty(environ, svc) != "" && !b.given("SERVICE_PORTS") {
		b.fail("%s is required with %s: the ports of the Service, as JSON such as [{\"name\":\"my-port\",\"port\":1024}]", awaitPrefix+"SERVICE_PORTS_JSON", svc)
	}
	b.takeNothingMore(true) // the original bound STATUS_ENDPOINT alone
	t, err := b.translation(AwaitElection)
	if err != nil {
		return Translation{}, err
	}
	t.Command = command
	t.Election = nonEmpty(environ, awaitName)
	if f, err := strconv.ParseBool(enabled); (err == nil && !f) || strings.EqualFold(enabled, "no") || strings.EqualFold(enabled, "off") {
		t.Warnings = append(t.Warnings, fmt.Sprintf("%s reads as false, but like k8s-await-election any non-empty value enables the election; unset it to run the command without one", en))
	}
	return t, nil
}

// unelected is k8s-await-election without K8S_AWAIT_ELECTION_ENABLED: the
// command runs with no election. A command without "--" while one of our
// own variables is set is refused instead: it is a forgotten "--", and it
// would run on every replica.
func unelected(command []string, environ func(string) (string, bool)) (Translation, error) {
	if len(command) == 0 {
		return Translation{}, fmt.Errorf("%s variables are set but no command is given: k8s-await-election's arguments are the command to run (without %s, it runs without an election)", awaitPrefix+"*", awaitEnabled)
	}
	if _, awaitSet := firstSet(environ, awaitVariables); !awaitSet {
		if v := ownVariableSet(environ); v != "" {
			return Translation{}, fmt.Errorf("%s is set, but the command %q comes without \"--\" before it: "+
				"write `leader-elector -- %s` to run it on the leader alone; without \"--\" a command runs on every replica with no election, "+
				"as k8s-await-election without %s does, and only when none of leader-elector's own variables is set",
				origin{v, nonEmpty(environ, v)}, strings.Join(command, " "), shellWords(command), awaitEnabled)
		}
	}
	return Translation{FrontEnd: Exec, Command: command, environ: environ}, nil
}

// wholeSeconds reads k8s-await-election's timings: a whole number of
// seconds, from 1 to election.MaxDuration's. It returns the broken rule, or
// "".
func wholeSeconds(v string) (time.Duration, string) {
	n, err := strconv.Atoi(v)
	max := int(election.MaxDuration / time.Second)
	switch {
	case err != nil || strings.HasPrefix(v, "+"):
		return 0, "must be whole seconds, such as 15"
	case n < 1 || n > max:
		return 0, fmt.Sprintf("must be whole seconds from 1 to %d", max)
	}
	return time.Duration(n) * time.Second, ""
}

// generalVariables are variables of ours that an app's container commonly
// has for itself (the Downward API's, a kubeconfig, a log level): set alone,
// they do not show that the user meant our own front end.
var generalVariables = map[string]bool{
	"NAMESPACE": true, "POD_NAMESPACE": true, "POD_NAME": true, "POD_IP": true, "POD_UID": true, "NODE_NAME": true,
	"IDENTITY": true, "KUBECONFIG": true, "LOG_LEVEL": true, "LOG_FORMAT": true,
}

// ownVariableSet returns the first of leader-elector's own variables, other
// than the general ones, that is set non-empty, or "".
func ownVariableSet(environ func(string) (string, bool)) string {
	for _, v := range config.Variables() {
		if !generalVariables[v.Name] && nonEmpty(environ, v.Name) != "" {
			return v.Name
		}
	}
	return ""
}

// shellWords writes command as a shell would read it back, on one line: a
// word with anything but letters, digits and -_./:=@%+, is quoted.
func shellWords(command []string) string {
	words := make([]string, len(command))
	for i, w := range command {
		words[i] = w
		if w == "" || strings.IndexFunc(w, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r))
		}) >= 0 {
			words[i] = strconv.Quote(w)
		}
	}
	return strings.Join(words, " ")
}
