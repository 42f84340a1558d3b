package chaos

import (
	"crypto/rand"
	binenc "encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/election"
)

// The sidecars' timings: short, so that a round takes seconds, and valid
// under the same rules the sidecar's configuration enforces.
const (
	leaseDuration = 2 * time.Second
	renewDeadline = 1500 * time.Millisecond
	retryPeriod   = 300 * time.Millisecond
	// healBound is invariant 3: one leader, routed, this long after a fault
	// healed at the latest.
	healBound = leaseDuration + time.Second
)

var timings = election.Timings{LeaseDuration: leaseDuration, RenewDeadline: renewDeadline, RetryPeriod: retryPeriod}

// defaultRounds is the short version that `go test ./...` runs.
const defaultRounds = 20

// settings are what a run is replayed from.
type settings struct {
	seed   int64
	rounds int
	// faults are the names to pick from; empty: all.
	faults string
}

// pool is the faults a run picks from.
func (s settings) pool() []fault {
	if s.faults == "" {
		return faults
	}
	var out []fault
	for _, name := range strings.Split(s.faults, ",") {
		for _, f := range faults {
			if f.name == name {
				out = append(out, f)
			}
		}
	}
	return out
}

// loadSettings reads CHAOS_SEED (default: random), CHAOS_ROUNDS (default
// defaultRounds) and CHAOS_FAULTS (comma-separated names; default all)
// through getenv.
func loadSettings(getenv func(string) string) (settings, error) {
	s := settings{rounds: defaultRounds}
	if v := getenv("CHAOS_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s, fmt.Errorf("CHAOS_SEED=%q: must be a decimal 64-bit integer", v)
		}
		s.seed = seed
	} else {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return s, fmt.Errorf("pick a seed: %w", err)
		}
		s.seed = int64(binenc.LittleEndian.Uint64(b[:]) >> 1)
	}
	if v := getenv("CHAOS_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return s, fmt.Errorf("CHAOS_ROUNDS=%q: must be a whole number from 1 to 100000", v)
		}
		s.rounds = n
	}
	if v := getenv("CHAOS_FAULTS"); v != "" {
		var names []string
		for _, f := range faults {
			names = append(names, f.name)
		}
		for _, name := range strings.Split(v, ",") {
			if !slices.Contains(names, name) {
				return s, fmt.Errorf("CHAOS_FAULTS=%q: %q is no fault; the faults are %s", v, name, strings.Join(names, ","))
			}
		}
		s.faults = v
	}
	return s, nil
}

func TestLoadSettings(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name    string
		env     map[string]string
		want    settings
		wantErr string
	}{
		{"replay", map[string]string{"CHAOS_SEED": "42", "CHAOS_ROUNDS": "200"}, settings{42, 200, ""}, ""},
		{"default rounds", map[string]string{"CHAOS_SEED": "-7"}, settings{-7, defaultRounds, ""}, ""},
		{"some faults", map[string]string{"CHAOS_SEED": "1", "CHAOS_FAULTS": "delete-lease,sigkill-leader"}, settings{1, defaultRounds, "delete-lease,sigkill-leader"}, ""},
		{"unknown fault", map[string]string{"CHAOS_SEED": "1", "CHAOS_FAULTS": "delete-lease,flood"}, settings{},
			`CHAOS_FAULTS="delete-lease,flood": "flood" is no fault; the faults are sigkill-leader,sigstop-leader,cut-off-leader,slow-leader-pods,restart-apiserver,restart-etcd,delete-lease,clear-holder,set-holder,unlabel-leader,revoke-rolebinding,readonly-statusdir,sigterm-in-stepdown,catchall-standby,stream-flood,twin-follower,gatekeeper-fork,delete-leader-pod`},
		{"bad seed", map[string]string{"CHAOS_SEED": "0x10"}, settings{}, `CHAOS_SEED="0x10": must be a decimal 64-bit integer`},
		{"zero rounds", map[string]string{"CHAOS_SEED": "1", "CHAOS_ROUNDS": "0"}, settings{}, `CHAOS_ROUNDS="0": must be a whole number from 1 to 100000`},
		{"words", map[string]string{"CHAOS_SEED": "1", "CHAOS_ROUNDS": "many"}, settings{}, `CHAOS_ROUNDS="many": must be a whole number from 1 to 100000`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := loadSettings(env(tc.env))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if s, err := loadSettings(env(nil)); err != nil || s.rounds != defaultRounds || len(s.pool()) != len(faults) {
		t.Errorf("without variables: %+v, %v", s, err)
	}
	s, _ := loadSettings(env(map[string]string{"CHAOS_FAULTS": "delete-lease,sigkill-leader"}))
	if p := s.pool(); len(p) != 2 || p[0].name != "delete-lease" || p[1].name != "sigkill-leader" {
		t.Errorf("pool of CHAOS_FAULTS=delete-lease,sigkill-leader = %v", p)
	}
}

func TestTimingsPassTheSidecarsRules(t *testing.T) {
	if err := timings.Validate(); err != nil {
		t.Fatalf("the chaos timings %+v break a rule: %v", timings, err)
	}
}
