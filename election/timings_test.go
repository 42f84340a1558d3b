package election

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// broken is one rule a Timings breaks: the field and the rule as Rule
// renders it with env-style names.
type broken struct {
	field string
	value time.Duration
	rule  string
}

// envName maps field names as config does, to check that Rule names other
// fields through the given function and not by their Go names.
func envName(field string) string {
	return map[string]string{
		FieldLeaseDuration: "LEASE_DURATION",
		FieldRenewDeadline: "RENEW_DEADLINE",
		FieldRetryPeriod:   "RETRY_PERIOD",
	}[field]
}

func TestTimingsValidate(t *testing.T) {
	good := Timings{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	for _, tc := range []struct {
		name string
		mod  func(*Timings)
		want []broken
	}{
		{"defaults", func(*Timings) {}, nil},
		{"the tightest valid", func(t *Timings) {
			*t = Timings{LeaseDuration: time.Second, RenewDeadline: 600 * time.Millisecond, RetryPeriod: 499 * time.Millisecond}
		}, nil},
		{"the longest valid", func(t *Timings) {
			*t = Timings{LeaseDuration: MaxDuration, RenewDeadline: 20 * time.Second, RetryPeriod: 8 * time.Second}
		}, nil},
		{"zero lease", func(t *Timings) { t.LeaseDuration = 0 },
			[]broken{{FieldLeaseDuration, 0, "must be greater than zero"}}},
		{"zero renew", func(t *Timings) { t.RenewDeadline = 0 },
			[]broken{{FieldRenewDeadline, 0, "must be greater than zero"}}},
		{"zero retry", func(t *Timings) { t.RetryPeriod = 0 },
			[]broken{{FieldRetryPeriod, 0, "must be greater than zero"}}},
		{"negative, each", func(t *Timings) { *t = Timings{-time.Second, -2 * time.Second, -3 * time.Second} },
			[]broken{
				{FieldLeaseDuration, -time.Second, "must be greater than zero"},
				{FieldRenewDeadline, -2 * time.Second, "must be greater than zero"},
				{FieldRetryPeriod, -3 * time.Second, "must be greater than zero"},
			}},
		{"lease over the maximum", func(t *Timings) { t.LeaseDuration = MaxDuration + time.Second },
			[]broken{{FieldLeaseDuration, MaxDuration + time.Second, "must be at most 1h0m0s"}}},
		{"renew over the maximum", func(t *Timings) { t.RenewDeadline = MaxDuration + 1 },
			[]broken{{FieldRenewDeadline, MaxDuration + 1, "must be at most 1h0m0s"}}},
		{"retry over the maximum", func(t *Timings) { t.RetryPeriod = 1<<63 - 1 },
			[]broken{{FieldRetryPeriod, 1<<63 - 1, "must be at most 1h0m0s"}}},
		{"lease not whole seconds", func(t *Timings) { t.LeaseDuration = 15500 * time.Millisecond },
			[]broken{{FieldLeaseDuration, 15500 * time.Millisecond, "must be whole seconds: the Lease stores seconds"}}},
		{"lease equal to renew", func(t *Timings) { t.LeaseDuration = 10 * time.Second },
			[]broken{{FieldLeaseDuration, 10 * time.Second, "must be greater than RENEW_DEADLINE (10s)"}}},
		{"lease below renew", func(t *Timings) { t.LeaseDuration = 5 * time.Second },
			[]broken{{FieldLeaseDuration, 5 * time.Second, "must be greater than RENEW_DEADLINE (10s)"}}},
		{"renew equal to 1.2 x retry", func(t *Timings) { t.RenewDeadline = 2400 * time.Millisecond },
			[]broken{{FieldRenewDeadline, 2400 * time.Millisecond, "must be greater than 1.2 x RETRY_PERIOD (2s)"}}},
		{"renew just above 1.2 x retry", func(t *Timings) { t.RenewDeadline = 2400*time.Millisecond + 1 }, nil},
		{"step-down over the maximum", func(t *Timings) {
			*t = Timings{LeaseDuration: 40 * time.Second, RenewDeadline: 20 * time.Second, RetryPeriod: 8*time.Second + 1}
		}, []broken{{FieldRenewDeadline, 20 * time.Second,
			"plus RETRY_PERIOD (8.000000001s) must be at most 28s: stepping down takes up to their sum, and a SIGTERM must finish within the default 30s grace period"}}},
		{"step-down exactly at the maximum", func(t *Timings) {
			*t = Timings{LeaseDuration: 40 * time.Second, RenewDeadline: 20 * time.Second, RetryPeriod: 8 * time.Second}
		}, nil},
		{"several at once", func(t *Timings) {
			*t = Timings{LeaseDuration: 5500 * time.Millisecond, RenewDeadline: 6 * time.Second, RetryPeriod: 5 * time.Second}
		}, []broken{
			{FieldLeaseDuration, 5500 * time.Millisecond, "must be whole seconds: the Lease stores seconds"},
			{FieldLeaseDuration, 5500 * time.Millisecond, "must be greater than RENEW_DEADLINE (6s)"},
			{FieldRenewDeadline, 6 * time.Second, "must be greater than 1.2 x RETRY_PERIOD (5s)"},
		}},
		{"a bad field is not also compared", func(t *Timings) { t.RetryPeriod = -time.Second },
			[]broken{{FieldRetryPeriod, -time.Second, "must be greater than zero"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tm := good
			tc.mod(&tm)
			err := tm.Validate()
			got := timingErrors(t, err)
			if len(got) != len(tc.want) {
				t.Fatalf("Validate() = %v: %d broken rules, want %d", err, len(got), len(tc.want))
			}
			for i, w := range tc.want {
				g := got[i]
				if g.Field != w.field || g.Value != w.value {
					t.Errorf("error %d: Field %s, Value %s; want %s, %s", i, g.Field, g.Value, w.field, w.value)
				}
				if rule := g.Rule(envName); rule != w.rule {
					t.Errorf("error %d: Rule(envName) = %q, want %q", i, rule, w.rule)
				}
				// Error names the field and value, and other fields by their Go names.
				goRule := g.Rule(func(f string) string { return f })
				if want := g.Field + " " + g.Value.String() + " " + goRule; g.Error() != want {
					t.Errorf("error %d: Error() = %q, want %q", i, g.Error(), want)
				}
				if strings.Contains(goRule, "RENEW_DEADLINE") || strings.Contains(goRule, "RETRY_PERIOD") {
					t.Errorf("error %d: Rule with Go names = %q still names env variables", i, goRule)
				}
			}
		})
	}
}

// timingErrors unpacks Validate's joined result, checking that each part is
// a *TimingError.
func timingErrors(t *testing.T, err error) []*TimingError {
	t.Helper()
	if err == nil {
		return nil
	}
	var parts []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		parts = j.Unwrap()
	} else {
		parts = []error{err}
	}
	out := make([]*TimingError, 0, len(parts))
	for _, p := range parts {
		var te *TimingError
		if !errors.As(p, &te) {
			t.Fatalf("Validate() part %q is a %T, want *TimingError", p, p)
		}
		out = append(out, te)
	}
	return out
}

func TestStepDownBound(t *testing.T) {
	tm := Timings{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}
	if got := tm.StepDownBound(); got != 12*time.Second {
		t.Errorf("StepDownBound() = %s, want RetryPeriod + RenewDeadline = 12s", got)
	}
}
