package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// The measurements of this file run at N=3 only, behind a counting proxy per
// replica, as they always did: how fast an app beside a follower hears of
// the new leader (push), how fast a command run only on the leader moves to
// the new one (gatekeeper), and how fast a Service selecting role=leader
// follows a handover through the real endpointslice controller (routed).

const (
	legacyReplicas = 3
	service        = "bench-leader"
)

// mode is what a measurement times in each handover, from the leader's
// SIGTERM on.
type mode int

const (
	routed     mode = iota // until the Service names the next leader alone
	push                   // until an app beside a follower hears of the next leader
	gatekeeper             // until the next leader's command has run
)

// legacyResult holds what one N=3 measurement found.
type legacyResult struct {
	routing []time.Duration // SIGTERM until the Service names the next leader alone
	push    []time.Duration // SIGTERM until an app beside a follower hears of the next leader
	command []time.Duration // SIGTERM until the next leader's command has run
	gap     []time.Duration // time with no ready endpoint, per handover
}

// replica is one pod's elector behind a counting proxy.
type replica struct {
	s     *testcluster.Sidecar
	proxy *testcluster.Proxy
}

// measure starts the replicas of k in a namespace of their own and adds
// b.rounds handovers, timed as m says, to r.
func (b *bench) measure(ctx context.Context, k electorKind, m mode, r *legacyResult) error {
	ns, err := b.cp.CreateNamespace(ctx, strings.ReplaceAll(strings.ToLower(k.name), " ", "-"))
	if err != nil {
		return err
	}
	defer b.cp.DeleteNamespace(context.WithoutCancel(ctx), ns)
	if err := b.cp.ApplyManifests(ctx, ns, filepath.Join(testcluster.RepoRoot(), "deploy", "rbac", "rbac.yaml")); err != nil {
		return err
	}
	if m == routed {
		if err := b.cp.CreateNode(ctx, "node-1"); err != nil {
			return err
		}
		if err := b.cp.CreateLeaderService(ctx, ns, service, app); err != nil {
			return err
		}
	}
	token, err := b.cp.ServiceAccountToken(ctx, ns, testcluster.ServiceAccount)
	if err != nil {
		return err
	}
	var reps []*replica
	defer func() {
		for _, r := range reps {
			_ = r.s.Terminate()
			r.proxy.Close()
		}
	}()
	for i := range legacyReplicas {
		pod := fmt.Sprintf("replica-%d", i)
		node := ""
		if m == routed {
			node = "node-1"
		}
		if _, err := b.cp.CreatePod(ctx, ns, pod, testcluster.PodOptions{Labels: map[string]string{"app": app}, NodeName: node}); err != nil {
			return err
		}
		if m == routed {
			if err := b.cp.MarkRunning(ctx, ns, pod, fmt.Sprintf("10.244.0.%d", i+10)); err != nil {
				return err
			}
		}
		proxy, err := testcluster.NewProxy(b.cp.URL, b.cp.CAData, token)
		if err != nil {
			return err
		}
		dir := filepath.Join(b.dir, ns, pod)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		kubeconfig := filepath.Join(dir, "kubeconfig")
		if err := testcluster.WriteKubeconfig(kubeconfig, proxy.URL, nil, ""); err != nil {
			return err
		}
		opts := testcluster.SidecarOptions{
			Binary: k.binary, Namespace: ns, Pod: pod, Lease: lease, Kubeconfig: kubeconfig, Env: k.env, Dir: dir,
		}
		switch m {
		case push: // the baseline's; leader-elector reads no such variable
			opts.Env = append(slices.Clone(k.env), "NEW_LEADER_FILE="+newLeaderFile(dir))
		case gatekeeper:
			opts.Args = []string{"--", "/bin/sh", "-c", commandScript(filepath.Join(b.dir, ns))}
		}
		s, err := b.startSidecar(opts)
		if err != nil {
			proxy.Close()
			return err
		}
		reps = append(reps, &replica{s: s, proxy: proxy})
	}
	if _, err := testcluster.WaitForLeader(ctx, sidecars(reps), "", 60*time.Second); err != nil {
		return err
	}
	for i := range b.rounds {
		if err := b.handover(ctx, k, reps, r, ns, m); err != nil {
			return fmt.Errorf("round %d: %w", i+1, err)
		}
	}
	return nil
}

// handover terminates the leader, measures as m says, and restarts it as a
// follower.
func (b *bench) handover(ctx context.Context, k electorKind, reps []*replica, r *legacyResult, ns string, m mode) error {
	ctx, cancel := context.WithCancel(ctx) // ends the listeners' streams
	defer cancel()
	leader, err := testcluster.WaitForLeader(ctx, sidecars(reps), "", 60*time.Second)
	if err != nil {
		return err
	}
	var followers []*testcluster.Sidecar
	for _, s := range sidecars(reps) {
		if s != leader {
			followers = append(followers, s)
		}
	}
	var heard func() error
	switch m {
	case routed:
		if _, _, err := b.cp.WaitRouted(ctx, ns, service, leader.Opts.Pod, time.Now(), 30*time.Second); err != nil {
			return err
		}
	case push:
		if heard, err = k.listen(ctx, followers, leader.Opts.Pod); err != nil {
			return err
		}
	case gatekeeper:
		for _, s := range sidecars(reps) {
			if err := os.Remove(marker(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	start := time.Now()
	if err := leader.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	switch m {
	case routed:
		next, err := testcluster.WaitForLeader(ctx, sidecars(reps), leader.Opts.Pod, 60*time.Second)
		if err != nil {
			return err
		}
		took, gap, err := b.cp.WaitRouted(ctx, ns, service, next.Opts.Pod, start, 60*time.Second)
		if err != nil {
			return err
		}
		r.routing, r.gap = append(r.routing, took), append(r.gap, gap)
	case push:
		if err := heard(); err != nil {
			return err
		}
		r.push = append(r.push, time.Since(start))
	case gatekeeper:
		if err := waitForCommand(ctx, followers); err != nil {
			return err
		}
		r.command = append(r.command, time.Since(start))
	}
	select {
	case <-leader.Done():
	case <-time.After(30 * time.Second):
		return fmt.Errorf("%s did not exit within 30s of SIGTERM", leader.Opts.Pod)
	}
	if err := leader.Restart(); err != nil {
		return err
	}
	// Give the restarted replica time to start and observe, as in a rollout.
	return sleep(ctx, 3*time.Second)
}

// sidecars returns the replicas' sidecars.
func sidecars(reps []*replica) []*testcluster.Sidecar {
	out := make([]*testcluster.Sidecar, len(reps))
	for i, r := range reps {
		out[i] = r.s
	}
	return out
}
