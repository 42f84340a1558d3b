// Command leader-elector is a sidecar that elects one leader among the
// replicas of a workload through a Kubernetes Lease, and tells the app through
// a status file, a pod label and HTTP endpoints. Run with --help for its
// environment variables.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/config"
	"github.com/leader-elector/leader-elector/gatekeeper"
	"github.com/leader-elector/leader-elector/kubeclient"
	"github.com/leader-elector/leader-elector/sidecar"
)

// version is set at build time (make build).
var version = "dev"

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.LookupEnv, os.Stdout, os.Stderr))
}

// run is the whole program, with the environment passed in as lookup (like
// os.LookupEnv); it returns the exit code: 2 for bad usage or configuration,
// 1 for a failure while running, and the command's own status when the
// command after "--" ended the sidecar.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
	var command []string // the gatekeeper's: leader-elector -- mycmd arg...
	if i := slices.Index(args, "--"); i >= 0 {
		args, command = args[:i], args[i+1:]
		if len(command) == 0 {
			fmt.Fprintln(stderr, "leader-elector: -- must be followed by the command to run while leading")
			return 2
		}
	}
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			fmt.Fprintf(stdout, "leader-elector %s: elects one leader among the replicas of a workload.\n\nConfigured by environment variables:\n\n", version)
			_ = config.Usage(stdout)
			return 0
		case "--version":
			fmt.Fprintln(stdout, version)
			return 0
		default:
			fmt.Fprintf(stderr, "leader-elector: unknown argument %q: configuration comes from environment variables, see --help; a command to run while leading follows --\n", a)
			return 2
		}
	}
	cfg, err := config.Load(lookup, config.DefaultSources)
	if err != nil {
		fmt.Fprintf(stderr, "leader-elector: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	cfg.Command = command
	log := newLogger(cfg, stderr)
	klog.SetSlogLogger(log)

	return exitCode(runSidecar(ctx, cfg, log), log)
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

func runSidecar(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	client, err := kubeclient.Connect(cfg.Kubeconfig, "leader-elector/"+version)
	if err != nil {
		return err
	}
	s, err := sidecar.New(cfg, sidecar.Deps{Leases: client.Leases(cfg.Namespace), Pods: client.Pods(cfg.Namespace),
		Clock: clock.RealClock{}, Log: log, Version: version})
	if err != nil {
		return err
	}
	ctx, stop := onSignal(ctx, s.Forward, log)
	defer stop()
	return s.Run(ctx)
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
