// Package sidecar assembles the leader-elector sidecar from its parts: the
// election decides, and the status file, the role label and the health
// endpoints follow it.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/config"
	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/health"
	"github.com/leader-elector/leader-elector/kubeclient"
	"github.com/leader-elector/leader-elector/labeler"
	"github.com/leader-elector/leader-elector/leasestore"
	"github.com/leader-elector/leader-elector/status"
)

// Version is set at build time.
var Version = "dev"

// NewClient connects with the kubeconfig at path, or in-cluster when path
// is empty.
func NewClient(kubeconfig string) (*kubeclient.Client, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("load KUBECONFIG=%q: %w", kubeconfig, err)
		}
	} else if cfg, err = rest.InClusterConfig(); err != nil {
		return nil, fmt.Errorf("no KUBECONFIG set and not running in a cluster: %w", err)
	}
	cfg.UserAgent = "leader-elector/" + Version
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return kubeclient.New(cfg)
}

// Report is the JSON of /status.
type Report struct {
	Identity     string          `json:"identity"`
	Leader       string          `json:"leader"`
	IsLeader     bool            `json:"is_leader"`
	Lease        string          `json:"lease"`
	Namespace    string          `json:"namespace"`
	PodName      string          `json:"pod_name,omitempty"`
	PodIP        string          `json:"pod_ip,omitempty"`
	Transitions  int             `json:"transitions"`
	AcquireTime  *time.Time      `json:"acquire_time,omitempty"`
	RenewTime    *time.Time      `json:"renew_time,omitempty"`
	LastObserved *time.Time      `json:"last_observed,omitempty"`
	Watching     bool            `json:"watching"`
	StatusFile   string          `json:"status_file"`
	LastError    string          `json:"last_error,omitempty"`
	StatusError  string          `json:"status_file_error,omitempty"`
	Label        *labeler.Status `json:"label,omitempty"`
	Version      string          `json:"version"`
}

// Run runs the sidecar until ctx ends, then steps down, releases the Lease
// and returns.
func Run(ctx context.Context, cfg config.Config, client *kubeclient.Client, clk clock.WithDelayedExecution, log *slog.Logger) error {
	path, err := status.Resolve(cfg.StatusFile, cfg.StatusDir)
	if err != nil {
		return err
	}
	file := status.New(path, log)
	// First of all: a file left by an earlier run would claim leadership.
	if err := file.RemoveStale(); err != nil {
		return err
	}
	log.Info("starting leader-elector", "version", Version, "identity", cfg.Identity,
		"lease", cfg.Namespace+"/"+cfg.LeaseName, "status_file", path, "label_pod_role", cfg.LabelPodRole,
		"lease_duration", cfg.LeaseDuration, "renew_deadline", cfg.RenewDeadline, "retry_period", cfg.RetryPeriod)

	var lab *labeler.Labeler
	if cfg.LabelPodRole {
		lab, err = labeler.New(labeler.Config{
			Pods: client.Pods(cfg.Namespace), Pod: cfg.PodName, Key: cfg.RoleLabelKey,
			PeerSelector: cfg.PeerSelector, Logger: log,
		})
		if err != nil {
			return err
		}
	}

	var statusErr errorBox
	elector, err := election.New(election.Config{
		Lock:          leasestore.New(client.Leases(cfg.Namespace), cfg.Namespace, cfg.LeaseName, cfg.RetryPeriod, clk, log),
		Identity:      cfg.Identity,
		LeaseDuration: cfg.LeaseDuration,
		RenewDeadline: cfg.RenewDeadline,
		RetryPeriod:   cfg.RetryPeriod,
		Clock:         clk,
		Logger:        log,
		Callbacks: election.Callbacks{
			OnStartedLeading: func(ctx context.Context, s election.State) error {
				if err := file.Publish(cfg.Identity); err != nil {
					statusErr.set(err)
					log.Error("cannot write the status file; giving the Lease back", "err", err)
					return err
				}
				statusErr.set(nil)
				if lab != nil {
					lab.Set(labeler.Leader)
				}
				return nil
			},
			OnStoppedLeading: func(ctx context.Context, s election.State) {
				if err := file.Withdraw(); err != nil {
					statusErr.set(err)
					log.Error("cannot remove the status file", "err", err)
				}
				if lab != nil {
					if err := lab.Demote(ctx); err != nil {
						log.Error("stepped down but could not set the role label to follower; the next leader demotes it", "err", err)
					}
				}
			},
		},
	})
	if err != nil {
		return err
	}

	srv, err := health.Listen(":"+strconv.Itoa(cfg.HealthPort), health.Handler(health.Checks{
		Live: func() error {
			if since := clk.Since(elector.State().LastTick); since > 2*cfg.LeaseDuration {
				return fmt.Errorf("election loop has not run for %s", since.Round(time.Millisecond))
			}
			return nil
		},
		Ready: func() error {
			s := elector.State()
			if !s.Watching && clk.Since(s.LastObserved) > cfg.LeaseDuration {
				err := fmt.Errorf("lease %s/%s not watched, and not read for over %s", cfg.Namespace, cfg.LeaseName, cfg.LeaseDuration)
				if s.LastError != "" {
					err = fmt.Errorf("%w: %s", err, s.LastError)
				}
				return err
			}
			return file.Writable()
		},
		Status: func() any { return report(cfg, elector.State(), path, statusErr.get(), lab) },
	}), log)
	if err != nil {
		return fmt.Errorf("HEALTH_PORT=%d: %w", cfg.HealthPort, err)
	}

	// Watch the status file's directory before anything can be published. A
	// directory that cannot be watched (missing, say) is no reason to stop:
	// the first write then fails and the replica does not lead.
	guard, err := file.Watch()
	if err != nil {
		statusErr.set(err)
		log.Error("a deleted or changed status file will not be restored", "err", err)
	}

	// The helpers outlive the election, so that stepping down at the end can
	// still remove the file and write the label.
	helpers, stopHelpers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	wg.Go(func() { errs <- srv.Serve(helpers) })
	if guard != nil {
		wg.Go(func() {
			errs <- guard.Run(helpers, func(err error) {
				statusErr.set(err)
				log.Error("cannot restore the status file; giving the Lease back", "err", err)
				elector.Resign(err)
			})
		})
	}
	if lab != nil {
		wg.Go(func() { errs <- lab.Run(helpers) })
	}
	runErr := elector.Run(ctx)
	stopHelpers()
	wg.Wait()
	close(errs)
	for err := range errs {
		runErr = errors.Join(runErr, err)
	}
	log.Info("leader-elector stopped")
	return runErr
}

func report(cfg config.Config, s election.State, path string, statusErr error, lab *labeler.Labeler) Report {
	r := Report{
		Identity: s.Identity, Leader: s.Leader, IsLeader: s.IsLeader,
		Lease: cfg.LeaseName, Namespace: cfg.Namespace, PodName: cfg.PodName, PodIP: cfg.PodIP, Transitions: s.Transitions,
		AcquireTime: timePtr(s.AcquireTime), RenewTime: timePtr(s.RenewTime), LastObserved: timePtr(s.LastObserved),
		Watching: s.Watching, StatusFile: path, LastError: s.LastError, Version: Version,
	}
	if statusErr != nil {
		r.StatusError = statusErr.Error()
	}
	if lab != nil {
		st := lab.Status()
		r.Label = &st
	}
	return r
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// errorBox holds the latest error of the status file for /status.
type errorBox struct {
	mu  sync.Mutex
	err error
}

func (b *errorBox) set(err error) { b.mu.Lock(); b.err = err; b.mu.Unlock() }
func (b *errorBox) get() error    { b.mu.Lock(); defer b.mu.Unlock(); return b.err }
