package compat

// The flags of nais/elector and of kubernetes/contrib's leader-elector, in
// one flag set: both take --election, --election-namespace and --http, and
// both parse with spf13/pflag, so --flag=value and --flag value work, as
// there. Go's flag package's -flag is accepted too.

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/pflag"
)

// Which elector a flag belongs to.
const (
	shared = iota // both
	naisOnly
	gcrOnly
)

// flagSpec is one flag of the union.
type flagSpec struct {
	name   string
	owner  int
	isBool bool
}

var flagSpecs = []flagSpec{
	{name: "election", owner: shared},
	{name: "election-namespace", owner: shared},
	{name: "http", owner: shared},
	{name: "probe-address", owner: naisOnly},
	{name: "metrics-address", owner: naisOnly},
	{name: "log-format", owner: naisOnly},
	{name: "log-level", owner: naisOnly},
	{name: "id", owner: gcrOnly},
	{name: "ttl", owner: gcrOnly},
	{name: "use-cluster-credentials", owner: gcrOnly, isBool: true},
}

// given is the flags on the command line, by name, with their values.
type given map[string]string

// parseFlags parses args against the union of both electors' flags.
func parseFlags(args []string) (given, error) {
	fs := pflag.NewFlagSet("leader-elector", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	for _, f := range flagSpecs {
		if f.isBool {
			fs.Bool(f.name, false, "")
		} else {
			fs.String(f.name, "", "")
		}
	}
	err := fs.Parse(goStyle(args))
	switch {
	case errors.Is(err, pflag.ErrHelp):
		return nil, ErrHelp
	case err != nil:
		// pflag's message holds the argument unquoted: keep it one line.
		msg := strings.NewReplacer("\n", `\n`, "\r", `\r`).Replace(err.Error())
		return nil, fmt.Errorf("%s (the flags are those of nais/elector and of contrib's leader-elector; see --help)", msg)
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected argument %q: after flags, no command or other argument is taken (k8s-await-election's command comes alone, with K8S_AWAIT_ELECTION_ENABLED)", fs.Arg(0))
	}
	g := given{}
	fs.Visit(func(f *pflag.Flag) { g[f.Name] = f.Value.String() })
	return g, nil
}

// goStyle rewrites -name and -name=value of a known flag to --name, as Go's
// flag package reads them; pflag would read -election as the shorthands
// -e -l -e ...
func goStyle(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			for _, f := range flagSpecs {
				if f.name == name {
					a = "-" + a
					break
				}
			}
		}
		out = append(out, a)
	}
	return out
}

// flags translates nais/elector's or contrib leader-elector's flags; with
// args nil, nais/elector's ELECTOR_* variables alone.
//
// The electors share --election, --election-namespace and --http. A flag
// of contrib's alone (--id, --ttl, --use-cluster-credentials) means contrib's
// semantics; one of nais/elector's alone (--probe-address, --metrics-address,
// --log-format, --log-level) or an ELECTOR_* variable of a flag means
// nais/elector's. With shared flags only, --election-namespace decides:
// nais/elector requires it, and contrib's README starts its elector without
// (--election=example --http=0.0.0.0:4040).
func flags(args []string, environ func(string) (string, bool)) (Translation, error) {
	g, err := parseFlags(args)
	if err != nil {
		return Translation{}, err
	}
	var gcrFlag, naisFlag string
	for _, f := range flagSpecs {
		if _, ok := g[f.name]; !ok {
			continue
		}
		switch {
		case f.owner == gcrOnly && gcrFlag == "":
			gcrFlag = "--" + f.name
		case f.owner == naisOnly && naisFlag == "":
			naisFlag = "--" + f.name
		}
	}
	if naisFlag == "" {
		naisFlag = naisEnvSet(environ)
	}
	_, namespaced := g["election-namespace"]
	switch {
	case gcrFlag != "" && naisFlag != "":
		return Translation{}, fmt.Errorf("%s is contrib leader-elector's and %s nais/elector's: use the flags of one of them", gcrFlag, naisFlag)
	case gcrFlag != "", naisFlag == "" && !namespaced:
		return gcr(g, environ)
	}
	return nais(g, environ)
}
