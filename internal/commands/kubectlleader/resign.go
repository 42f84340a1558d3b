package kubectlleader

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/internal/commands/cli"
	"github.com/leader-elector/leader-elector/internal/commands/leasestatus"
	"github.com/leader-elector/leader-elector/internal/kubeclient"
)

const resignUsage = `Usage: kubectl leader resign LEASE [--to POD] [-n NS] [--context CTX] [--kubeconfig FILE]

Finds the Lease's live holder and runs /leader-elector resign [--to POD] in
its pod's leader-elector container, as kubectl exec would: the sidecar steps
down and hands the Lease to POD, or to its standby. Its output and exit code
are resign's (0 handed over; see leader-elector resign --help). It needs get
on the Lease, list on pods and create on pods/exec.

Flags:
`

// sidecarContainer and sidecarBinary are where resign runs: the container
// of deploy/, the component and the chart, and the image's binary.
const (
	sidecarContainer = "leader-elector"
	sidecarBinary    = "/leader-elector"
)

// resign runs `kubectl leader resign`.
func resign(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer, userAgent string) int {
	fs := cli.NewFlagSet("resign")
	fs.Init("kubectl leader resign", fs.ErrorHandling())
	namespace := fs.String("namespace", "", "namespace of the Lease (default: the context's, else default)")
	fs.StringVar(namespace, "n", "", "short for --namespace")
	kubeconfig := fs.String("kubeconfig", env(lookup, "KUBECONFIG", leasestatus.HomeKubeconfig(lookup)), "kubeconfig file (default: KUBECONFIG, else ~/.kube/config)")
	kubeContext := fs.String("context", "", "the kubeconfig context to use (default: its current context)")
	to := fs.String("to", "", "hand the Lease to this pod (default: the standby)")
	container := fs.String("container", sidecarContainer, "the sidecar's container")
	timeout := cli.Duration{D: 30 * time.Second}
	fs.Var(&timeout, "timeout", "how long resign waits for the handover")
	pos, code, ok := cli.Run(fs, args, resignUsage, stdout, stderr)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return cli.Usagef(stderr, fs, "want one argument, the Lease's name; got %d (see --help)", len(pos))
	}
	lease := pos[0]
	if errs := validation.IsDNS1123Subdomain(lease); len(errs) > 0 {
		return cli.Usagef(stderr, fs, "LEASE=%q: must be a Lease name: %s", lease, errs[0])
	}
	if errs := validation.IsDNS1123Label(*namespace); *namespace != "" && len(errs) > 0 {
		return cli.Usagef(stderr, fs, "--namespace=%q: must be a namespace name: %s", *namespace, errs[0])
	}
	if errs := validation.IsDNS1123Label(*container); len(errs) > 0 {
		return cli.Usagef(stderr, fs, "--container=%q: must be a container name: %s", *container, errs[0])
	}
	loader := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: *kubeconfig}, &clientcmd.ConfigOverrides{CurrentContext: *kubeContext})
	if *namespace == "" {
		ns, _, err := loader.Namespace()
		if err != nil {
			fmt.Fprintf(stderr, "kubectl leader resign: find the namespace: %v\n", err)
			return cli.ExitFailure
		}
		*namespace = ns
	}
	cfg, err := loader.ClientConfig()
	if err != nil {
		fmt.Fprintf(stderr, "kubectl leader resign: load KUBECONFIG=%q: %v\n", *kubeconfig, err)
		return cli.ExitFailure
	}
	cfg.UserAgent = userAgent
	c, err := kubeclient.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kubectl leader resign: %v\n", err)
		return cli.ExitFailure
	}
	rctx, cancel := context.WithTimeout(ctx, timeout.D+10*time.Second)
	defer cancel()
	r, err := leasestatus.Read(rctx, c.Leases(*namespace), c.Pods(*namespace), leasestatus.Query{Namespace: *namespace, Lease: lease, LabelKey: "role"}, clock.RealClock{})
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "kubectl leader resign: %v\n", err)
		return cli.ExitFailure
	case !r.Live:
		fmt.Fprintf(stderr, "kubectl leader resign: Lease %s/%s has no live leader to resign\n", *namespace, lease)
		return leasestatus.ExitNoLeader
	}
	command := []string{sidecarBinary, "resign", "--timeout", timeout.D.String()}
	if *to != "" {
		command = append(command, "--to", *to)
	}
	fmt.Fprintf(stderr, "kubectl leader resign: %s leads; running %v in its container %s\n", r.Holder, command, *container)
	return execIn(rctx, cfg, *namespace, r.Holder, *container, command, stdout, stderr)
}

// execIn runs command in the pod's container as kubectl exec does (the
// WebSocket protocol, else SPDY) and returns its exit code.
func execIn(ctx context.Context, cfg *rest.Config, ns, pod, container string, command []string, stdout, stderr io.Writer) int {
	q := url.Values{"container": {container}, "stdout": {"true"}, "stderr": {"true"}, "command": command}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		fmt.Fprintf(stderr, "kubectl leader resign: the server %q: %v\n", cfg.Host, err)
		return cli.ExitFailure
	}
	u = u.JoinPath(cfg.APIPath, "api/v1/namespaces", ns, "pods", pod, "exec")
	u.RawQuery = q.Encode()
	ws, err := remotecommand.NewWebSocketExecutor(cfg, "GET", u.String())
	if err == nil {
		var spdy remotecommand.Executor
		if spdy, err = remotecommand.NewSPDYExecutor(cfg, "POST", u); err == nil {
			ws, err = remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool { return true })
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "kubectl leader resign: exec in %s/%s: %v\n", ns, pod, err)
		return cli.ExitFailure
	}
	err = ws.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: stdout, Stderr: stderr})
	var exit utilexec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		return exit.ExitStatus()
	}
	fmt.Fprintf(stderr, "kubectl leader resign: exec in %s/%s, container %s: %v\n", ns, pod, container, err)
	return cli.ExitFailure
}

func env(lookup func(string) (string, bool), k, def string) string {
	if v, ok := lookup(k); ok && v != "" {
		return v
	}
	return def
}
