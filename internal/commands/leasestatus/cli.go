package leasestatus

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/internal/commands/cli"
	"github.com/leader-elector/leader-elector/internal/kubeclient"
)

const usage = `Usage: leader-elector status [--namespace NS] [-o table|json] [--wait] [flags] LEASE

Reads the Lease and the pods carrying the role label, and shows who leads,
for how long, when the Lease was renewed and when it expires, which pods are
labelled leader, and what disagrees. With --wait it reads again every
half second until there is a live leader (or --timeout). Credentials:
--kubeconfig (and --context), else KUBECONFIG, else ~/.kube/config, else the
pod's ServiceAccount (in a cluster). It needs get on the Lease and list on
pods.

Exit codes: 0 a live leader and, if pods carry the role label, it alone is
labelled leader; 1 the Lease or the pods could not be read; 2 bad usage;
3 no live leader (no Lease, released, expired, or a Lease that cannot say);
4 a live leader, but the role labels disagree (two pods say leader, or the
holder does not).

Flags:
`

// Command is `leader-elector status` with what it runs on.
type Command struct {
	// Lookup reads the environment, like os.LookupEnv.
	Lookup         func(string) (string, bool)
	Stdout, Stderr io.Writer
	// Clock gives the time the ages are measured at.
	Clock clock.PassiveClock
	// Connect returns the APIs of namespace ns with the kubeconfig at path
	// (empty: in-cluster), in its context kubeContext (empty: the current).
	Connect func(path, kubeContext, ns string) (Leases, Pods, error)
	// Name is the command as the user typed it, for messages: "leader-elector
	// status" (the default) or "kubectl leader status".
	Name string
}

// Main runs `leader-elector status` with args (after "status") on the real
// clock and API server, and returns the exit code.
func Main(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, userAgent string) int {
	return New(lookup, stdout, stderr, clock.RealClock{}, userAgent).Run(ctx, args)
}

// New returns the command on clk and the real API server, naming itself
// userAgent to it.
func New(lookup func(string) (string, bool), stdout, stderr io.Writer, clk clock.PassiveClock, userAgent string) Command {
	return Command{Lookup: lookup, Stdout: stdout, Stderr: stderr, Clock: clk,
		Connect: func(path, kubeContext, ns string) (Leases, Pods, error) {
			c, err := kubeclient.ConnectContext(path, kubeContext, userAgent)
			if err != nil {
				return nil, nil, err
			}
			return c.Leases(ns), c.Pods(ns), nil
		}}
}

// HomeKubeconfig is ~/.kube/config outside a cluster, where kubectl reads
// it without KUBECONFIG, if it exists; else "". lookup reads the
// environment.
func HomeKubeconfig(lookup func(string) (string, bool)) string {
	if v, ok := lookup("KUBERNETES_SERVICE_HOST"); ok && v != "" {
		return ""
	}
	home, ok := lookup("HOME")
	if !ok || home == "" {
		return ""
	}
	p := filepath.Join(home, ".kube", "config")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Run runs the command with args and returns the exit code.
func (c Command) Run(ctx context.Context, args []string) int {
	env := func(k, def string) string {
		if v, ok := c.Lookup(k); ok && v != "" {
			return v
		}
		return def
	}
	fs := cli.NewFlagSet("status")
	if c.Name != "" {
		fs.Init(c.Name, flag.ContinueOnError)
	}
	var q Query
	fs.StringVar(&q.Namespace, "namespace", "", "namespace of the Lease and the pods (default: the kubeconfig's, else the pod's, else default)")
	fs.StringVar(&q.Namespace, "n", "", "short for --namespace")
	output := fs.String("output", "table", "table (for a person) or json (for a script)")
	fs.StringVar(output, "o", "table", "short for --output")
	fs.StringVar(&q.LabelKey, "label-key", env("ROLE_LABEL_KEY", "role"), "key of the role label (default: ROLE_LABEL_KEY, else role)")
	fs.StringVar(&q.Selector, "selector", "", "label selector narrowing the pods, such as app.kubernetes.io/instance=web, when the namespace holds more than one workload")
	fs.StringVar(&q.Selector, "l", "", "short for --selector")
	kubeconfig := fs.String("kubeconfig", env("KUBECONFIG", HomeKubeconfig(c.Lookup)), "kubeconfig file (default: KUBECONFIG, else ~/.kube/config outside a cluster, as kubectl, else in-cluster)")
	kubeContext := fs.String("context", "", "the kubeconfig context to use (default: its current context), as kubectl's --context")
	wait := fs.Bool("wait", false, "read again every half second until there is a live leader, then report; with --timeout, exit code 3 if none came")
	timeout := cli.Duration{D: 30 * time.Second}
	fs.Var(&timeout, "timeout", "give up reading (or waiting) after this long, with exit code 1 (3 when waiting); 0: no limit")
	pos, code, ok := cli.Run(fs, args, strings.Replace(usage, "leader-elector status", c.name(), 1), c.Stdout, c.Stderr)
	if !ok {
		return code
	}
	switch {
	case len(pos) != 1:
		return cli.Usagef(c.Stderr, fs, "want one argument, the Lease's name; got %d (see --help)", len(pos))
	case *output != "table" && *output != "json":
		return cli.Usagef(c.Stderr, fs, "-o=%q: must be table or json", *output)
	}
	q.Lease = pos[0]
	if errs := validation.IsDNS1123Subdomain(q.Lease); len(errs) > 0 {
		return cli.Usagef(c.Stderr, fs, "LEASE=%q: must be a Lease name: %s", q.Lease, errs[0])
	}
	if _, err := q.PodSelector(); err != nil {
		return cli.Usagef(c.Stderr, fs, "%v", err)
	}
	if q.Namespace == "" {
		ns, err := kubeconfigNamespace(*kubeconfig, *kubeContext)
		if err != nil {
			fmt.Fprintf(c.Stderr, "%s: %v\n", c.name(), err)
			return cli.ExitFailure
		}
		q.Namespace = ns
	} else if errs := validation.IsDNS1123Label(q.Namespace); len(errs) > 0 {
		return cli.Usagef(c.Stderr, fs, "--namespace=%q: must be a namespace name: %s", q.Namespace, errs[0])
	}
	return c.report(ctx, q, target{*kubeconfig, *kubeContext}, *output, timeout.D, *wait)
}

// waitInterval is how often --wait reads again.
const waitInterval = 500 * time.Millisecond

// after is the clock's After, for --wait: a fake clock's in tests.
func (c Command) after(d time.Duration) <-chan time.Time {
	if clk, ok := c.Clock.(clock.Clock); ok {
		return clk.After(d)
	}
	return time.After(d)
}

// target is where status reads: a kubeconfig and its context.
type target struct{ kubeconfig, context string }

func (c Command) name() string { return cmp.Or(c.Name, "leader-elector status") }

// kubeconfigNamespace is the namespace of kubeconfig's context, as kubectl
// finds it; default without a kubeconfig or a cluster (Connect says so).
func kubeconfigNamespace(kubeconfig, kubeContext string) (string, error) {
	ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: kubeconfig}, &clientcmd.ConfigOverrides{CurrentContext: kubeContext}).Namespace()
	switch {
	case clientcmd.IsEmptyConfig(err):
		return metav1.NamespaceDefault, nil
	case err != nil:
		return "", fmt.Errorf("find the namespace in KUBECONFIG=%q: %w", kubeconfig, err)
	}
	return ns, nil
}

// report reads what q asks for and writes it as output; its result is the
// exit code.
func (c Command) report(ctx context.Context, q Query, to target, output string, timeout time.Duration, wait bool) int {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	leases, pods, err := c.Connect(to.kubeconfig, to.context, q.Namespace)
	if err != nil {
		fmt.Fprintf(c.Stderr, "%s: %v\n", c.name(), err)
		return cli.ExitFailure
	}
	r, err := Read(ctx, leases, pods, q, c.Clock)
	for wait && err == nil && !r.Live {
		select {
		case <-ctx.Done():
			fmt.Fprintf(c.Stderr, "%s: no live leader of Lease %s/%s within %s\n", c.name(), q.Namespace, q.Lease, timeout)
			if werr := r.WriteTable(c.Stderr); werr != nil {
				return cli.ExitFailure
			}
			return ExitNoLeader
		case <-c.after(waitInterval):
		}
		r, err = Read(ctx, leases, pods, q, c.Clock)
	}
	if err != nil {
		fmt.Fprintf(c.Stderr, "%s: %v\n", c.name(), err)
		return cli.ExitFailure
	}
	write := r.WriteTable
	if output == "json" {
		write = r.WriteJSON
	}
	if err := write(c.Stdout); err != nil {
		fmt.Fprintf(c.Stderr, "%s: write the report: %v\n", c.name(), err)
		return cli.ExitFailure
	}
	return r.ExitCode
}
