package testcluster

import (
	"context"
	"fmt"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// WaitForLeader polls every millisecond until a running sidecar other than
// the one of pod not has its status file, and returns it. On timeout the
// error holds the end of every sidecar's log.
func WaitForLeader(ctx context.Context, sidecars []*Sidecar, not string, timeout time.Duration) (*Sidecar, error) {
	var leader *Sidecar
	err := wait.PollUntilContextTimeout(ctx, time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		for _, s := range sidecars {
			if s.Opts.Pod != not && !s.Exited() && s.HasStatusFile() {
				leader = s
				return true, nil
			}
		}
		return false, nil
	})
	if err == nil {
		return leader, nil
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	var logs strings.Builder
	for _, s := range sidecars {
		fmt.Fprintf(&logs, "--- %s\n%s\n", s.Opts.Pod, s.LogTail(15))
	}
	return nil, fmt.Errorf("no leader within %s:\n%s", timeout, logs.String())
}

// WaitRouted samples the Service's ready endpoints every 2ms until they are
// pod alone. It returns the time since start and how long, meanwhile, no
// endpoint was ready.
func (cp *ControlPlane) WaitRouted(ctx context.Context, ns, service, pod string, start time.Time, timeout time.Duration) (took, gap time.Duration, err error) {
	last := time.Now()
	err = wait.PollUntilContextTimeout(ctx, 2*time.Millisecond, timeout-time.Since(start), true, func(ctx context.Context) (bool, error) {
		eps, err := cp.ServiceEndpoints(ctx, ns, service)
		now := time.Now()
		if err == nil && len(eps) == 0 {
			gap += now.Sub(last)
		}
		last = now
		if err == nil && len(eps) == 1 && eps[0] == pod {
			took = now.Sub(start)
			return true, nil
		}
		return false, nil
	})
	switch {
	case err == nil:
		return took, gap, nil
	case ctx.Err() != nil:
		return 0, 0, ctx.Err()
	}
	return 0, 0, fmt.Errorf("the Service %s/%s did not route to %s alone within %s", ns, service, pod, timeout)
}
