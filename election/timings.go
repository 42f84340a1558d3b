package election

import (
	"errors"
	"fmt"
	"time"
)

// Limits of the timings. MaxStepDown bounds how long stepping down may take
// (see Timings.StepDownBound), so that a SIGTERM finishes within Kubernetes'
// default terminationGracePeriodSeconds of 30 s with room for the process to
// exit. MaxDuration keeps every timing far from the int32 seconds the Lease
// stores and from overflow when timings are added or doubled.
const (
	MaxStepDown = 28 * time.Second
	MaxDuration = time.Hour
)

// Timings are the three durations of an election. The rules that relate them
// live here only; config reports them under its variable names.
type Timings struct {
	// LeaseDuration is how long a follower waits, after it first saw the
	// current record, before it may take a Lease that was not released.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps leading after it sent its
	// last successful renew.
	RenewDeadline time.Duration
	// RetryPeriod is how often the leader renews, and how often a follower
	// polls while its watch is down.
	RetryPeriod time.Duration
}

// The field names TimingError uses.
const (
	FieldLeaseDuration = "LeaseDuration"
	FieldRenewDeadline = "RenewDeadline"
	FieldRetryPeriod   = "RetryPeriod"
)

// TimingError is one broken timing rule: the field, its value and the rule.
type TimingError struct {
	Field string
	Value time.Duration
	// rule renders the rule, naming other fields through name.
	rule func(name func(field string) string) string
}

// Rule says the rule, naming fields through name, such as a function that
// maps FieldRenewDeadline to "RENEW_DEADLINE".
func (e *TimingError) Rule(name func(field string) string) string { return e.rule(name) }

func (e *TimingError) Error() string {
	return fmt.Sprintf("%s %s %s", e.Field, e.Value, e.rule(func(f string) string { return f }))
}

// StepDownBound is the longest stepping down can take: up to RetryPeriod for
// OnStoppedLeading (the sidecar removes the file and labels follower), then
// up to RenewDeadline for the release.
func (t Timings) StepDownBound() time.Duration { return t.RetryPeriod + t.RenewDeadline }

// Validate checks every timing rule and returns each broken one as a
// *TimingError, joined; nil when all hold.
func (t Timings) Validate() error {
	var errs []error
	bad := func(field string, v time.Duration, rule func(name func(string) string) string) {
		errs = append(errs, &TimingError{Field: field, Value: v, rule: rule})
	}
	fixed := func(s string) func(func(string) string) string {
		return func(func(string) string) string { return s }
	}
	ok := map[string]bool{}
	for _, f := range []struct {
		name string
		v    time.Duration
	}{{FieldLeaseDuration, t.LeaseDuration}, {FieldRenewDeadline, t.RenewDeadline}, {FieldRetryPeriod, t.RetryPeriod}} {
		switch {
		case f.v <= 0:
			bad(f.name, f.v, fixed("must be greater than zero"))
		case f.v > MaxDuration:
			bad(f.name, f.v, fixed(fmt.Sprintf("must be at most %s", MaxDuration)))
		default:
			ok[f.name] = true
		}
	}
	ld, rd, rp := ok[FieldLeaseDuration], ok[FieldRenewDeadline], ok[FieldRetryPeriod]
	if ld && t.LeaseDuration%time.Second != 0 {
		bad(FieldLeaseDuration, t.LeaseDuration, fixed("must be whole seconds: the Lease stores seconds"))
	}
	if ld && rd && t.LeaseDuration <= t.RenewDeadline {
		bad(FieldLeaseDuration, t.LeaseDuration, func(name func(string) string) string {
			return fmt.Sprintf("must be greater than %s (%s)", name(FieldRenewDeadline), t.RenewDeadline)
		})
	}
	if rd && rp && t.RenewDeadline*5 <= t.RetryPeriod*6 {
		bad(FieldRenewDeadline, t.RenewDeadline, func(name func(string) string) string {
			return fmt.Sprintf("must be greater than 1.2 x %s (%s)", name(FieldRetryPeriod), t.RetryPeriod)
		})
	}
	if rd && rp && t.StepDownBound() > MaxStepDown {
		bad(FieldRenewDeadline, t.RenewDeadline, func(name func(string) string) string {
			return fmt.Sprintf("plus %s (%s) must be at most %s: stepping down takes up to their sum, and a SIGTERM must finish within the default 30s grace period",
				name(FieldRetryPeriod), t.RetryPeriod, MaxStepDown)
		})
	}
	return errors.Join(errs...)
}
