// Package cli parses the flags of leader-elector's subcommands with the
// standard flag package, in the ways the subcommands share: flags may follow
// the positional arguments (`status myapp-lock -n prod`, as kubectl takes
// them), and a bad flag is one line naming the flag, the value and the rule.
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"time"
)

// Exit codes every subcommand shares.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command could not do its job (API error, unwatchable directory)
	ExitUsage   = 2 // bad flags or arguments
)

// NewFlagSet returns a FlagSet for subcommand name that reports errors to
// the caller instead of printing or exiting.
func NewFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("leader-elector "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// Parse parses args into fs and returns the positional arguments, wherever
// they stand among the flags; everything after "--" is positional.
// flag.ErrHelp means -h or --help was given.
func Parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
}

// Run parses args into fs and handles the outcomes every subcommand handles
// alike: help goes to stdout with ExitOK, a parse error is one line on stderr
// with ExitUsage. ok is false when the caller must return code.
func Run(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (pos []string, code int, ok bool) {
	pos, err := Parse(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil, ExitOK, false
	case err != nil:
		return nil, Usagef(stderr, fs, "%v (see --help)", err), false
	}
	return pos, ExitOK, true
}

// Usagef writes one line of bad usage, prefixed with the command's name, and
// returns ExitUsage.
func Usagef(stderr io.Writer, fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	return ExitUsage
}

// Duration is a flag.Value for a timeout: a Go duration, not negative, where
// 0 means no limit.
type Duration struct{ D time.Duration }

func (d *Duration) String() string {
	if d == nil {
		return "0s"
	}
	return d.D.String()
}

// Set parses s; its error is the rule, which flag completes with the flag's
// name and the value.
func (d *Duration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return errors.New("must be a Go duration that is not negative, such as 30s or 2m; 0 waits without limit")
	}
	d.D = v
	return nil
}
