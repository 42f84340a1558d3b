// Command leader-elector is a sidecar that elects one leader among the
// replicas of a workload through a Kubernetes Lease, and tells the app through
// a status file, a pod label and HTTP endpoints. Run with --help for its
// environment variables. It is also started as nais/elector, contrib's
// leader-elector and k8s-await-election are (package compat).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/internal/commands/await"
	"github.com/leader-elector/leader-elector/internal/commands/completion"
	"github.com/leader-elector/leader-elector/internal/commands/kubectlleader"
	"github.com/leader-elector/leader-elector/internal/commands/leasestatus"
	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/dropins/compat"
	"github.com/leader-elector/leader-elector/internal/inputs/control"
	"github.com/leader-elector/leader-elector/internal/kubeclient"
	"github.com/leader-elector/leader-elector/internal/memtrim"
	"github.com/leader-elector/leader-elector/internal/outputs/eventrecorder"
	"github.com/leader-elector/leader-elector/internal/outputs/gatekeeper"
	"github.com/leader-elector/leader-elector/internal/sidecar"
)

// version, commit and date are set at build time (make build): the release
// tag (or git describe), the commit and its time.
var (
	version = "dev"
	commit  = "unknown"
	date    = "unknown"
)

// versionLine is what --version and the version subcommand print.
func versionLine() string {
	return fmt.Sprintf("leader-elector %s commit=%s date=%s go=%s platform=%s/%s",
		version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

func main() {
	if filepath.Base(os.Args[0]) == kubectlleader.Name { // run by kubectl as its plugin
		os.Exit(kubectlleader.Main(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr, "kubectl-leader/"+version, versionLine()))
	}
	os.Exit(run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is the whole program, with the environment passed in as lookup (like
// os.LookupEnv); it returns the exit code: 2 for bad usage or configuration,
// 1 for a failure while running, and the command's own status when the
// command after "--" ended the sidecar.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "await":
			return await.Main(ctx, args[1:], lookup, stdout, stderr)
		case "status":
			return leasestatus.Main(ctx, args[1:], lookup, stdout, stderr, "leader-elector/"+version)
		case "resign":
			return control.Main(ctx, args[1:], lookup, stdout, stderr)
		case "help": // reserved, never a command to exec
			return help(stdout)
		case "version":
			fmt.Fprintln(stdout, versionLine())
			return 0
		case "completion":
			return completion.Main(args[1:], stdout, stderr)
		}
	}
	switch {
	case len(args) == 1 && args[0] == "--version":
		fmt.Fprintln(stdout, versionLine())
		return 0
	case len(args) == 1 && slices.Contains([]string{"-h", "-help", "--help"}, args[0]):
		return help(stdout)
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		// A typo of a subcommand is no command to exec.
		if sub := nearestSubcommand(args[0]); sub != "" {
			if _, err := exec.LookPath(args[0]); err != nil {
				fmt.Fprintf(stderr, "leader-elector: unknown command %q; did you mean `leader-elector %s`? (see --help)\n", args[0], sub)
				return 2
			}
		}
	}
	tr, err := compat.Translate(args, lookup)
	switch {
	case errors.Is(err, compat.ErrHelp):
		return help(stdout)
	case err != nil:
		return invalid(stderr, err)
	case tr.FrontEnd == compat.Exec:
		return execDirectly(tr.Command, stderr)
	}
	cfg, err := config.Load(tr.Lookup, config.DefaultSources)
	if err != nil {
		return invalid(stderr, tr.Explain(err))
	}
	cfg.Command = tr.Command
	log := newLogger(cfg, stderr)
	klog.SetSlogLogger(log)
	tr.Log(log)
	// A kubeconfig that cannot be loaded is configuration, like any other.
	client, err := kubeclient.Connect(cfg.Kubeconfig, "leader-elector/"+version)
	if err != nil {
		return invalid(stderr, err)
	}
	return exitCode(runSidecar(ctx, cfg, client, log), log)
}

// exitCode is 0 for nil, the command's status when the gatekeeper's command
// ended the sidecar, and 1 for any other failure.
func exitCode(err error, log *slog.Logger) int {
	var exit *gatekeeper.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &exit):
		log.Info("leader-elector exits with the command's status", "code", exit.Code, "err", err)
		return exit.Code
	default:
		log.Error("leader-elector failed", "err", err)
		return 1
	}
}

func help(stdout io.Writer) int {
	fmt.Fprintf(stdout, "leader-elector %s: elects one leader among the replicas of a workload.\n\n", version)
	fmt.Fprint(stdout, `Commands (each with --help):
  leader-elector await [--leader | --follower]   wait until the status file says so
  leader-elector status LEASE                    who leads, and does everything agree
  leader-elector resign [--to POD]               make the sidecar in this container step down
  leader-elector --version                       print the version (also: leader-elector version)
  leader-elector -- COMMAND [ARGS...]            run COMMAND on the leader only (the gatekeeper)

Configured by environment variables:

`)
	_ = config.Usage(stdout)
	fmt.Fprintln(stdout)
	_ = compat.Usage(stdout)
	return 0
}

// invalid reports bad usage or configuration, one problem a line: exit code 2.
func invalid(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "leader-elector: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	return 2
}

// execDirectly replaces this process with the command, as k8s-await-election
// does without K8S_AWAIT_ELECTION_ENABLED: no election, no Kubernetes API.
// It returns only when that fails: 127 when the command is not found, 126
// when it cannot be executed, as a shell does.
func execDirectly(command []string, stderr io.Writer) int {
	path, err := exec.LookPath(command[0])
	if err != nil {
		fmt.Fprintf(stderr, "leader-elector: %v\n", err)
		return 127
	}
	fmt.Fprintf(stderr, "leader-elector: K8S_AWAIT_ELECTION_ENABLED is not set: running %s without an election, as k8s-await-election does\n", path)
	err = syscall.Exec(path, command, os.Environ())
	fmt.Fprintf(stderr, "leader-elector: running %s: %v\n", path, err)
	return 126
}

// subcommands are the words run takes as its own first argument.
var subcommands = []string{"await", "status", "resign", "help", "version", "completion"}

// nearestSubcommand returns the subcommand that word is a typo of (at most
// two edits away), or "".
func nearestSubcommand(word string) string {
	best, bestDist := "", 3
	for _, s := range subcommands {
		if d := editDistance(word, s); d < bestDist {
			best, bestDist = s, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b, with a swap of two
// neighbours counting as one edit.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func runSidecar(ctx context.Context, cfg config.Config, client *kubeclient.Client, log *slog.Logger) error {
	deps := sidecar.Deps{Leases: client.Leases(cfg.Namespace), Pods: client.Pods(cfg.Namespace),
		Clock: clock.RealClock{}, Log: log, Version: version,
		StartupDone: func() { releaseStartupPages(log) }}
	if cfg.ServiceName != "" {
		disc, err := client.Discovery()
		if err != nil {
			return err
		}
		deps.Slices = disc.EndpointSlices(cfg.ServiceNamespace)
		deps.Services, deps.Endpoints = client.Services(cfg.ServiceNamespace), client.Endpoints(cfg.ServiceNamespace)
	}
	if cfg.Events {
		ev, err := client.Events()
		if err != nil {
			return err
		}
		deps.Events = eventrecorder.NewSink(ev)
	}
	s, err := sidecar.New(cfg, deps)
	if err != nil {
		return err
	}
	ctx, stop := onSignal(ctx, s.Forward, log)
	defer stop()
	return s.Run(ctx)
}

// releaseStartupPages drops the binary's pages that only initialisation
// touched (see memtrim): about 8 MiB of resident memory once client-go's full
// API scheme is linked in.
func releaseStartupPages(log *slog.Logger) {
	n, err := memtrim.Release()
	if err != nil {
		log.Warn("could not release start-up memory; the sidecar works as usual", "err", err)
		return
	}
	log.Debug("released start-up memory", "bytes", n)
}

// onSignal returns a context that ends on SIGTERM or SIGINT, as
// signal.NotifyContext does, unless forward takes the signal: with the
// gatekeeper's command running, the signal goes to the command, and the
// sidecar keeps leading until the command has exited, then releases the
// Lease. stop undoes it.
func onSignal(ctx context.Context, forward func(os.Signal) bool, log *slog.Logger) (_ context.Context, stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case sig := <-sigs:
				if !forward(sig) {
					log.Info("stopping", "signal", sig)
					cancel()
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		cancel()
		<-done
	}
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel)) // validated by config
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
