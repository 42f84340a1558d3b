// Package leasestatus is `leader-elector status`: it reads a Lease and the
// pods carrying the role label, and reports who leads, since when, whether
// the Lease is live, and whether the labels agree, as a table for a person or
// JSON for a script, with an exit code for CI and runbooks.
package leasestatus

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Role label values, as the labeler writes them.
const (
	roleLeader = "leader"
)

// Exit codes besides cli's 0, 1 and 2.
const (
	// ExitNoLeader: no live leader (no Lease, released, expired, or a Lease
	// that cannot say).
	ExitNoLeader = 3
	// ExitDisagree: a live leader, but the role labels disagree with it.
	ExitDisagree = 4
)

// Report is what status shows: the same fields in the table and in JSON.
// Durations are on the local clock, against times the leader wrote with its
// own: clock skew between the two shifts them.
type Report struct {
	Namespace string `json:"namespace"`
	Lease     string `json:"lease"`
	// Found is false when the Lease does not exist.
	Found bool `json:"found"`
	// Holder is the Lease's holderIdentity; empty when released or unset.
	Holder               string     `json:"holder"`
	AcquireTime          *time.Time `json:"acquire_time"`
	RenewTime            *time.Time `json:"renew_time"`
	LeaseDurationSeconds *int32     `json:"lease_duration_seconds"`
	Transitions          int32      `json:"transitions"`
	// HeldFor is now - acquireTime; RenewAge is now - renewTime; ExpiresIn
	// is renewTime + leaseDurationSeconds - now, negative once expired. Nil
	// when the Lease lacks the times they come from.
	HeldFor   *Seconds `json:"held_for_seconds"`
	RenewAge  *Seconds `json:"renew_age_seconds"`
	ExpiresIn *Seconds `json:"expires_in_seconds"`
	// Live is true when the Lease names a holder whose term has not ended.
	Live bool `json:"live"`
	// LabelKey is the role label's key; Pods maps every pod that has it to
	// its value, and LabelledLeader lists those whose value is leader.
	LabelKey       string            `json:"label_key"`
	Selector       string            `json:"selector"`
	Pods           map[string]string `json:"pods"`
	LabelledLeader []string          `json:"labelled_leader"`
	// Problems says in words what disagrees; empty when all is well.
	Problems []string `json:"problems"`
	// ExitCode is the exit code of the command for this report.
	ExitCode int `json:"exit_code"`
}

// Seconds is a duration, in seconds in JSON.
type Seconds time.Duration

// MarshalJSON writes the duration in seconds, to the millisecond.
func (s Seconds) MarshalJSON() ([]byte, error) {
	return fmt.Appendf(nil, "%.3f", time.Duration(s).Seconds()), nil
}

// UnmarshalJSON reads seconds, for scripts in Go.
func (s *Seconds) UnmarshalJSON(b []byte) error {
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil {
		return fmt.Errorf("seconds %s: %w", b, err)
	}
	*s = Seconds(time.Duration(f * float64(time.Second)).Round(time.Millisecond))
	return nil
}

// Build makes the report of lease (nil: it does not exist) and pods (those
// carrying the role label key) at now.
func Build(namespace, name string, lease *coordinationv1.Lease, pods []corev1.Pod, labelKey, selector string, now time.Time) Report {
	r := Report{Namespace: namespace, Lease: name, LabelKey: labelKey, Selector: selector,
		Pods: map[string]string{}, LabelledLeader: []string{}, Problems: []string{}}
	for _, p := range pods {
		v, ok := p.Labels[labelKey]
		if !ok || p.DeletionTimestamp != nil {
			continue
		}
		r.Pods[p.Name] = v
		if v == roleLeader {
			r.LabelledLeader = append(r.LabelledLeader, p.Name)
		}
	}
	slices.Sort(r.LabelledLeader)
	r.lease(lease, now)
	r.labels()
	switch {
	case !r.Live:
		r.ExitCode = ExitNoLeader
	case len(r.Problems) > 0:
		r.ExitCode = ExitDisagree
	}
	return r
}

// lease fills in the Lease's fields and whether it is live.
func (r *Report) lease(l *coordinationv1.Lease, now time.Time) {
	if l == nil {
		r.problem("the Lease %s/%s does not exist: no replica has ever led", r.Namespace, r.Lease)
		return
	}
	r.Found = true
	s := l.Spec
	if s.HolderIdentity != nil {
		r.Holder = *s.HolderIdentity
	}
	if s.LeaseTransitions != nil {
		r.Transitions = *s.LeaseTransitions
	}
	r.LeaseDurationSeconds = s.LeaseDurationSeconds
	if s.AcquireTime != nil {
		t := s.AcquireTime.Time
		r.AcquireTime, r.HeldFor = &t, ptrTo(Seconds(now.Sub(t)))
	}
	if s.RenewTime != nil {
		t := s.RenewTime.Time
		r.RenewTime, r.RenewAge = &t, ptrTo(Seconds(now.Sub(t)))
		if s.LeaseDurationSeconds != nil {
			end := t.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
			r.ExpiresIn = ptrTo(Seconds(end.Sub(now)))
		}
	}
	switch {
	case r.Holder == "":
		r.problem("the Lease has no holder: it was released, and no replica has taken it")
	case s.RenewTime == nil:
		r.problem("the Lease names %q but has no renewTime: it cannot say whether %q still leads", r.Holder, r.Holder)
	case s.LeaseDurationSeconds == nil:
		r.problem("the Lease names %q but has no leaseDurationSeconds: it cannot say whether %q still leads", r.Holder, r.Holder)
	case *s.LeaseDurationSeconds <= 0:
		r.problem("the Lease names %q with a leaseDurationSeconds of %d: its term ended when it began", r.Holder, *s.LeaseDurationSeconds)
	case *r.ExpiresIn <= 0:
		r.problem("the Lease of %q expired %s ago: no live leader", r.Holder, human(-time.Duration(*r.ExpiresIn)))
	default:
		r.Live = true
	}
}

// labels checks the role labels against the holder. No pod carrying the key
// means labels are not used: nothing to check.
func (r *Report) labels() {
	key := r.LabelKey
	if len(r.LabelledLeader) > 1 {
		r.problem("%d pods are labelled %s=%s: %s", len(r.LabelledLeader), key, roleLeader, strings.Join(r.LabelledLeader, ", "))
	}
	switch {
	case len(r.Pods) == 0:
	case !r.Live && len(r.LabelledLeader) > 0:
		r.problem("no live leader, yet labelled %s=%s: %s", key, roleLeader, strings.Join(r.LabelledLeader, ", "))
	case r.Live && !slices.Contains(r.LabelledLeader, r.Holder):
		if _, ok := r.Pods[r.Holder]; ok {
			r.problem("the holder %q is labelled %s=%s, not %s", r.Holder, key, r.Pods[r.Holder], roleLeader)
		} else {
			r.problem("the holder %q is not among the pods carrying the %s label (its identity is not a pod name, or the selector leaves it out)", r.Holder, key)
		}
	}
}

func (r *Report) problem(format string, args ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
}

func ptrTo[T any](v T) *T { return &v }

// human writes d for a person: to 0.1 s under a minute, where renew ages
// and expiries live, and as kubectl writes ages beyond.
func human(d time.Duration) string {
	if d.Abs() < time.Minute {
		return d.Round(100 * time.Millisecond).String()
	}
	sign := ""
	if d < 0 {
		sign = "-"
	}
	return sign + duration.HumanDuration(d.Abs())
}
