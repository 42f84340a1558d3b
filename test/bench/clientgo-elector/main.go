// Command clientgo-elector is the baseline the benchmark compares with: the
// same job (status file while leading) done the usual way, with client-go's
// tools/leaderelection, a LeaseLock and ReleaseOnCancel. It reads the same
// environment variables as leader-elector, so one harness runs both. Like
// leader-elector, it runs the command after "--", if any, while it leads,
// and with NEW_LEADER_FILE it writes every new leader it hears of there
// (OnNewLeader), as a follower's app would learn of it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "clientgo-elector:", err)
		os.Exit(1)
	}
}

func duration(key string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(key)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", key, v, err)
	}
	return d, nil
}

func run() error {
	ld, err := duration("LEASE_DURATION", 15*time.Second)
	if err != nil {
		return err
	}
	rd, err := duration("RENEW_DEADLINE", 10*time.Second)
	if err != nil {
		return err
	}
	rp, err := duration("RETRY_PERIOD", 2*time.Second)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG"))
	if err != nil {
		return err
	}
	cfg.UserAgent = "clientgo-elector/" + os.Getenv("IDENTITY")
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	file := os.Getenv("STATUS_FILE")
	identity := os.Getenv("IDENTITY")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	var command []string
	if len(os.Args) > 2 && os.Args[1] == "--" {
		command = os.Args[2:]
	}
	var cmd *exec.Cmd
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Name: os.Getenv("LEASE_NAME"), Namespace: os.Getenv("NAMESPACE")},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: identity},
		},
		LeaseDuration: ld, RenewDeadline: rd, RetryPeriod: rp,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) {
				if err := os.WriteFile(file, []byte(identity+"\n"), 0o644); err != nil {
					fmt.Fprintln(os.Stderr, "write status file:", err)
				}
				if command != nil {
					cmd = exec.Command(command[0], command[1:]...)
					cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
					if err := cmd.Start(); err != nil {
						fmt.Fprintln(os.Stderr, "start command:", err)
					}
				}
			},
			OnStoppedLeading: func() {
				_ = os.Remove(file)
				if cmd != nil && cmd.Process != nil {
					_ = cmd.Process.Signal(syscall.SIGTERM)
					_ = cmd.Wait()
				}
			},
			OnNewLeader: func(id string) {
				if path := os.Getenv("NEW_LEADER_FILE"); path != "" {
					if err := os.WriteFile(path, []byte(id+"\n"), 0o644); err != nil {
						fmt.Fprintln(os.Stderr, "write new leader file:", err)
					}
				}
			},
		},
	})
	return nil
}
