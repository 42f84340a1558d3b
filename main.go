// Command leader-elector is a sidecar that elects one leader among the
// replicas of a workload through a Kubernetes Lease, and tells the app through
// a status file, a pod label and HTTP endpoints. Run with --help for its
// environment variables.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/config"
	"github.com/leader-elector/leader-elector/eventrecorder"
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
// 1 for a failure while running.
func run(ctx context.Context, args []string, lookup func(string) (string, bool), stdout, stderr io.Writer) int {
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
			fmt.Fprintf(stderr, "leader-elector: unknown argument %q: configuration comes from environment variables, see --help\n", a)
			return 2
		}
	}
	cfg, err := config.Load(lookup, config.DefaultSources)
	if err != nil {
		fmt.Fprintf(stderr, "leader-elector: invalid configuration:\n  %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
		return 2
	}
	log := newLogger(cfg, stderr)
	klog.SetSlogLogger(log)

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	err = runSidecar(ctx, cfg, log)
	if err != nil {
		log.Error("leader-elector failed", "err", err)
		return 1
	}
	return 0
}

func runSidecar(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	client, err := kubeclient.Connect(cfg.Kubeconfig, "leader-elector/"+version)
	if err != nil {
		return err
	}
	deps := sidecar.Deps{Leases: client.Leases(cfg.Namespace), Pods: client.Pods(cfg.Namespace),
		Clock: clock.RealClock{}, Log: log, Version: version}
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
	return s.Run(ctx)
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
