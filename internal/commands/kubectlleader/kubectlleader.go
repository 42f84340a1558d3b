// Package kubectlleader is the binary run as kubectl-leader, the kubectl
// plugin: `kubectl leader status|await|resign`, with kubectl's conventions (-n,
// --context, --kubeconfig, KUBECONFIG, ~/.kube/config and its context's
// namespace). Under that name the binary never starts a sidecar.
package kubectlleader

import (
	"context"
	"fmt"
	"io"

	"github.com/leader-elector/leader-elector/internal/commands/cli"
	"github.com/leader-elector/leader-elector/internal/commands/leasestatus"
	"k8s.io/utils/clock"
)

// Name is the executable name kubectl finds the plugin by.
const Name = "kubectl-leader"

const usage = `kubectl leader: who leads a workload elected through a Lease.

Usage:
  kubectl leader status LEASE [-n NS] [-l SELECTOR] [-o table|json] [--context CTX] [--kubeconfig FILE]
      who leads, for how long, the role labels, and what disagrees
      (exit 0 a live leader, 3 none, 4 the labels disagree, 1 unreadable)
  kubectl leader await LEASE [--timeout 30s] [same flags]
      wait until the Lease has a live leader, then show it (exit 3 at the timeout; 0s: no limit)
  kubectl leader resign LEASE [--to POD] [same flags]
      run resign in the leader's sidecar (by exec): it steps down and hands over
  kubectl leader version

Each command's flags: kubectl leader status --help.
`

// Main runs the plugin with args (after the executable's name) and returns
// the exit code; version is what `kubectl leader version` prints.
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, userAgent, version string) int {
	status := func(name string, args []string) int {
		c := leasestatus.New(lookup, stdout, stderr, clock.RealClock{}, userAgent)
		c.Name = name
		return c.Run(ctx, args)
	}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ExitUsage
	}
	switch args[0] {
	case "status":
		return status("kubectl leader status", args[1:])
	case "await":
		return status("kubectl leader await", append([]string{"--wait"}, args[1:]...))
	case "version", "--version":
		fmt.Fprintln(stdout, version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "resign":
		return resign(ctx, args[1:], lookup, stdout, stderr, userAgent)
	}
	fmt.Fprintf(stderr, "kubectl leader: unknown command %q\n\n%s", args[0], usage)
	return cli.ExitUsage
}
