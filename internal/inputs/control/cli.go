package control

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/internal/commands/cli"
	"github.com/leader-elector/leader-elector/internal/config"
)

const usage = `Usage: leader-elector resign [--to POD] [--timeout D]

Asks the sidecar running in this container to step down: it removes the
status file and the role label as on any step-down, and hands the Lease to
the standby by a take-over, or releases it for a peer to take at once.
With --to it offers the Lease to that peer instead, at its pod's IP (or,
outside a pod, only if that peer is the standby), and waits until the peer
took it: a peer whose app is unhealthy, that backs off or shuts down
refuses; the Lease is then released to the others, and the refusal is
printed with its reason. Run it in the
leader's sidecar container, for example before draining its node:
  kubectl exec POD -c leader-elector -- leader-elector resign --to OTHER-POD
The request goes over the sidecar's unix socket: CONTROL_SOCKET, else
leader-elector.sock in the directory of STATUS_FILE (or STATUS_DIR), so
/tmp/leader-elector.sock by default.

Exit codes: 0 done, 1 not done (no sidecar listening, not the leader, the
peer unknown, refused or not reached, or --timeout passed), 2 bad usage or
configuration.

Flags:
`

// Main runs `leader-elector resign` with args (after "resign") and returns
// the exit code. lookup reads the environment, like os.LookupEnv.
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	fs := cli.NewFlagSet("resign")
	to := fs.String("to", "", "hand the Lease to this peer (its identity, usually its pod name) instead of releasing it")
	timeout := cli.Duration{D: 30 * time.Second}
	fs.Var(&timeout, "timeout", "give up waiting for the answer after this long; 0: wait without limit")
	pos, code, ok := cli.Run(fs, args, usage, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return cli.Usagef(stderr, fs, "unexpected argument %q: resign takes only flags; name the peer with --to (see --help)", pos[0])
	}
	if given(fs, "to") && *to == "" {
		return cli.Usagef(stderr, fs, `--to="": name the peer, or leave --to out to release the Lease`)
	}
	socket, off, err := config.ControlSocket(lookup)
	switch {
	case err != nil:
		return cli.Usagef(stderr, fs, "%v", err)
	case socket == "":
		return cli.Usagef(stderr, fs, "the control socket is off, so the sidecar takes no requests: %s", off)
	}

	if timeout.D > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout.D)
		defer cancel()
	}
	reply, err := Resign(ctx, socket, *to)
	var dial *DialError
	var refused *RefusedError
	switch {
	case err == nil && reply.Leader != "":
		fmt.Fprintf(stdout, "leader-elector resign: stepped down and handed the Lease to %s\n", reply.Leader)
		return cli.ExitOK
	case err == nil:
		fmt.Fprintln(stdout, "leader-elector resign: stepped down and released the Lease")
		return cli.ExitOK
	case errors.As(err, &dial):
		fmt.Fprintf(stderr, "leader-elector resign: no leader-elector is listening on %s (%s): %v; run it in the sidecar's container (kubectl exec POD -c CONTAINER -- leader-elector resign)\n", socket, variable, dial.Err)
	case errors.As(err, &refused):
		fmt.Fprintf(stderr, "leader-elector resign: refused: %s\n", refused.Message)
	case errors.Is(err, context.DeadlineExceeded) && timeout.D > 0:
		fmt.Fprintf(stderr, "leader-elector resign: no answer from %s within %s; the handover may still complete (leader-elector status LEASE shows who leads)\n", socket, timeout.D)
	default:
		fmt.Fprintf(stderr, "leader-elector resign: %v\n", err)
	}
	return cli.ExitFailure
}

// given says whether flag name was on the command line.
func given(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// DialError is Resign's error when nothing answers on the socket: the
// sidecar does not run, or runs elsewhere.
type DialError struct{ Err error }

func (e *DialError) Error() string { return "no leader-elector is listening: " + e.Err.Error() }
func (e *DialError) Unwrap() error { return e.Err }

// RefusedError is Resign's error when the sidecar refused in its current
// state (HTTP 409), such as when it is not the leader.
type RefusedError struct{ Message string }

func (e *RefusedError) Error() string { return "refused: " + e.Message }

// maxReply bounds the answer read: one line of JSON.
const maxReply = 64 << 10

// Resign asks the sidecar listening on socket to step down and release the
// Lease (to == "") or hand it to peer to, and waits for its answer until ctx
// ends. The error is a *DialError when nothing listens, a *RefusedError when
// the sidecar refused, else what failed.
func Resign(ctx context.Context, socket, to string) (Reply, error) {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", socket)
			if err != nil {
				return nil, &DialError{Err: err}
			}
			return c, nil
		},
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	u := url.URL{Scheme: "http", Host: "leader-elector", Path: Path}
	if to != "" {
		u.RawQuery = url.Values{"to": {to}}.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return Reply{}, fmt.Errorf("asking %s: %w", socket, err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		var dial *DialError
		if errors.As(err, &dial) {
			return Reply{}, dial
		}
		return Reply{}, fmt.Errorf("asking %s: %w", socket, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxReply))
	if err != nil {
		return Reply{}, fmt.Errorf("reading the answer from %s: %w", socket, err)
	}
	var reply Reply
	if err := json.Unmarshal(body, &reply); err != nil {
		return Reply{}, fmt.Errorf("answer from %s is no JSON reply (HTTP %d): %q", socket, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	switch {
	case resp.StatusCode == http.StatusOK && reply.OK:
		return reply, nil
	case resp.StatusCode == http.StatusConflict:
		return reply, &RefusedError{Message: reply.Error}
	default:
		return reply, fmt.Errorf("the sidecar answered HTTP %d: %s", resp.StatusCode, reply.Error)
	}
}
