package succession

import (
	"cmp"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// revisionLabels are the labels by which a workload controller tells its
// pods' revisions apart: a Deployment's ReplicaSets set pod-template-hash, a
// StatefulSet (and a DaemonSet) controller-revision-hash.
var revisionLabels = []string{"pod-template-hash", "controller-revision-hash"}

// Choose returns the peer to hand the Lease to, from pods (the own pod,
// self, may be among them), or nil if none may lead. A peer may lead if it
// is not being deleted, runs, and is Ready (its sidecar's readiness probe
// and its app's pass). Among those it prefers the newest revision: the
// revision of the most recently created pod that is not being deleted,
// which during a rolling update is the one being rolled out (and after a
// rollback the one rolled back to); so a rollout moves leadership once, to
// a pod the rollout keeps. Then the pod Ready the longest, then the name,
// so that the choice is stable.
func Choose(self string, pods []*corev1.Pod) *corev1.Pod {
	newest := newestRevision(pods)
	var ok []*corev1.Pod
	for _, p := range pods {
		if p.Name != self && mayLead(p) {
			ok = append(ok, p)
		}
	}
	if len(ok) == 0 {
		return nil
	}
	return slices.MinFunc(ok, func(a, b *corev1.Pod) int {
		return cmp.Or(
			boolFirst(revision(a) == newest, revision(b) == newest),
			readySince(a).Compare(readySince(b)),
			cmp.Compare(a.Name, b.Name))
	})
}

// mayLead reports whether p may be handed the Lease.
func mayLead(p *corev1.Pod) bool {
	return p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning && ready(p) != nil
}

// ready is p's Ready condition when it is true, else nil.
func ready(p *corev1.Pod) *corev1.PodCondition {
	for i, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// readySince is when p became Ready; zero if unknown.
func readySince(p *corev1.Pod) time.Time {
	if c := ready(p); c != nil {
		return c.LastTransitionTime.Time
	}
	return time.Time{}
}

// revision is p's revision label, or "".
func revision(p *corev1.Pod) string {
	for _, l := range revisionLabels {
		if v, ok := p.Labels[l]; ok {
			return v
		}
	}
	return ""
}

// newestRevision is the revision of the most recently created pod that is
// not being deleted.
func newestRevision(pods []*corev1.Pod) string {
	var newest *corev1.Pod
	for _, p := range pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if newest == nil || newest.CreationTimestamp.Before(&p.CreationTimestamp) {
			newest = p
		}
	}
	if newest == nil {
		return ""
	}
	return revision(newest)
}

// boolFirst orders true before false.
func boolFirst(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return -1
	}
	return 1
}
