package await

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/leader-elector/leader-elector/internal/commands/cli"
	"github.com/leader-elector/leader-elector/status"
)

// ExitTimeout is the exit code when --timeout passed first.
const ExitTimeout = 3

const usage = `Usage: leader-elector await [--leader | --follower] [--timeout D] [--file PATH]

Blocks until the status file says this replica leads (--leader, the default:
the file exists) or does not (--follower: it does not exist), for example
  leader-elector await --leader && exec myapp
The file is --file, else STATUS_FILE, else STATUS_DIR, else /tmp/leader_status,
resolved as the sidecar resolves it (an existing directory holds leader_status).

Exit codes: 0 the file says so, 1 the wait failed (the directory cannot be
watched), 2 bad usage, 3 --timeout passed.

Flags:
`

// errTimeout is the cause of the context that --timeout ends.
var errTimeout = errors.New("timeout")

// Main runs `leader-elector await` with args (after "await") and returns the
// exit code. lookup reads the environment, like os.LookupEnv.
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("await")
	leader := fs.Bool("leader", false, "wait until this replica leads: the status file exists (the default)")
	follower := fs.Bool("follower", false, "wait until this replica does not lead: the status file does not exist")
	var timeout cli.Duration
	fs.Var(&timeout, "timeout", "give up after this long, with exit code 3; 0: wait without limit")
	file := fs.String("file", "", "the status file (default: STATUS_FILE, else STATUS_DIR, else "+status.DefaultPath+")")
	pos, code, ok := cli.Run(fs, args, usage, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return cli.Usagef(stderr, fs, "unexpected argument %q: await takes only flags (see --help)", pos[0])
	}
	if *leader && *follower {
		return cli.Usagef(stderr, fs, "--leader and --follower exclude each other: give one")
	}
	want := Leader
	if *follower {
		want = Follower
	}
	statusFile, statusDir := *file, ""
	if statusFile == "" {
		statusFile, _ = lookup("STATUS_FILE")
		statusDir, _ = lookup("STATUS_DIR")
	}
	path, err := status.Resolve(statusFile, statusDir)
	if err != nil {
		return cli.Usagef(stderr, fs, "%v", err)
	}

	if timeout.D > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, timeout.D, errTimeout)
		defer cancel()
	}
	switch err := Wait(ctx, path, want); {
	case err == nil:
		return cli.ExitOK
	case errors.Is(err, errTimeout):
		fmt.Fprintf(stderr, "leader-elector await: timed out after %s waiting until %s says %s\n", timeout.D, path, want)
		return ExitTimeout
	default:
		fmt.Fprintf(stderr, "leader-elector await: waiting until %s says %s: %v\n", path, want, err)
		return cli.ExitFailure
	}
}
