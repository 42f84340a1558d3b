package config

import (
	"maps"
	"strings"
	"testing"
	"time"
)

func TestLoadRejectsBadAppHealth(t *testing.T) {
	t.Parallel()
	const url = "http://127.0.0.1:8080/healthz"
	tests := []struct {
		name string
		env  map[string]string // merged over minimalEnv
		want []string          // the start of each line, in order
	}{
		{"URL relative", map[string]string{"APP_HEALTH_URL": "/healthz"},
			[]string{`APP_HEALTH_URL="/healthz": must be an absolute http:// or https:// URL with a host, such as http://127.0.0.1:8080/healthz`}},
		{"URL without scheme", map[string]string{"APP_HEALTH_URL": "127.0.0.1:8080/healthz"},
			[]string{`APP_HEALTH_URL="127.0.0.1:8080/healthz": must be an absolute http:// or https:// URL`}},
		{"URL of another scheme", map[string]string{"APP_HEALTH_URL": "tcp://127.0.0.1:8080"},
			[]string{`APP_HEALTH_URL="tcp://127.0.0.1:8080": must be an absolute http:// or https:// URL`}},
		{"URL without host", map[string]string{"APP_HEALTH_URL": "http://:8080/healthz"},
			[]string{`APP_HEALTH_URL="http://:8080/healthz": must be an absolute http:// or https:// URL with a host`}},
		{"URL unparsable", map[string]string{"APP_HEALTH_URL": "http://[::1/healthz"},
			[]string{`APP_HEALTH_URL="http://[::1/healthz": must be an absolute`}},
		{"URL port zero", map[string]string{"APP_HEALTH_URL": "http://localhost:0/healthz"},
			[]string{`APP_HEALTH_URL="http://localhost:0/healthz": must be an absolute http:// or https:// URL with a host, such as http://127.0.0.1:8080/healthz, with a port from 1 to 65535`}},
		{"URL port too big", map[string]string{"APP_HEALTH_URL": "http://localhost:65536/"},
			[]string{`APP_HEALTH_URL="http://localhost:65536/": must be an absolute http:// or https:// URL with a host, such as http://127.0.0.1:8080/healthz, with a port from 1 to 65535`}},
		{"URL and FILE", map[string]string{"APP_HEALTH_URL": url, "APP_HEALTH_FILE": "/shared/alive"},
			[]string{`APP_HEALTH_URL="http://127.0.0.1:8080/healthz" and APP_HEALTH_FILE="/shared/alive": set only one`}},
		{"FILE relative", map[string]string{"APP_HEALTH_FILE": "shared/alive"},
			[]string{`APP_HEALTH_FILE="shared/alive": must be an absolute path, such as /shared/app-alive`}},
		{"PERIOD not a duration", map[string]string{"APP_HEALTH_PERIOD": "2"},
			[]string{`APP_HEALTH_PERIOD="2": must be a Go duration`}},
		{"PERIOD empty", map[string]string{"APP_HEALTH_PERIOD": ""},
			[]string{`APP_HEALTH_PERIOD="": must be a Go duration`}},
		{"PERIOD zero", map[string]string{"APP_HEALTH_PERIOD": "0s"},
			[]string{`APP_HEALTH_PERIOD="0s": must be greater than zero and at most 1h0m0s`}},
		{"PERIOD over an hour", map[string]string{"APP_HEALTH_PERIOD": "61m"},
			[]string{`APP_HEALTH_PERIOD="61m": must be greater than zero and at most 1h0m0s`}},
		// No second line comparing TIMEOUT with the broken PERIOD.
		{"PERIOD broken with URL", map[string]string{"APP_HEALTH_URL": url, "APP_HEALTH_PERIOD": "-1s"},
			[]string{`APP_HEALTH_PERIOD="-1s": must be greater than zero`}},
		{"PERIOD unparsable with FILE", map[string]string{"APP_HEALTH_FILE": "/shared/alive", "APP_HEALTH_PERIOD": "often"},
			[]string{`APP_HEALTH_PERIOD="often": must be a Go duration`}},
		{"TIMEOUT negative", map[string]string{"APP_HEALTH_TIMEOUT": "-1s"},
			[]string{`APP_HEALTH_TIMEOUT="-1s": must be greater than zero and at most 1h0m0s`}},
		{"TIMEOUT over PERIOD", map[string]string{"APP_HEALTH_URL": url, "APP_HEALTH_TIMEOUT": "3s"},
			[]string{`APP_HEALTH_TIMEOUT="3s": must be at most APP_HEALTH_PERIOD (2s)`}},
		{"TIMEOUT over a shorter PERIOD", map[string]string{"APP_HEALTH_URL": url, "APP_HEALTH_PERIOD": "500ms", "APP_HEALTH_TIMEOUT": "1s"},
			[]string{`APP_HEALTH_TIMEOUT="1s": must be at most APP_HEALTH_PERIOD (500ms)`}},
		{"FILE_MAX_AGE zero", map[string]string{"APP_HEALTH_FILE_MAX_AGE": "0s"},
			[]string{`APP_HEALTH_FILE_MAX_AGE="0s": must be greater than zero and at most 1h0m0s`}},
		{"FILE_MAX_AGE under PERIOD", map[string]string{"APP_HEALTH_FILE": "/shared/alive", "APP_HEALTH_FILE_MAX_AGE": "1s"},
			[]string{`APP_HEALTH_FILE_MAX_AGE="1s": must be at least APP_HEALTH_PERIOD (2s)`}},
		{"FILE_MAX_AGE under a longer PERIOD", map[string]string{"APP_HEALTH_FILE": "/shared/alive", "APP_HEALTH_PERIOD": "30s"},
			[]string{`APP_HEALTH_FILE_MAX_AGE="10s": must be at least APP_HEALTH_PERIOD (30s)`}},
		{"FAILURES zero", map[string]string{"APP_HEALTH_FAILURES": "0"},
			[]string{`APP_HEALTH_FAILURES="0": must be from 1 to 100`}},
		{"FAILURES too many", map[string]string{"APP_HEALTH_FAILURES": "101"},
			[]string{`APP_HEALTH_FAILURES="101": must be from 1 to 100`}},
		{"FAILURES not a number", map[string]string{"APP_HEALTH_FAILURES": "three"},
			[]string{`APP_HEALTH_FAILURES="three": must be a whole number, in decimal`}},
		{"SUCCESSES negative", map[string]string{"APP_HEALTH_SUCCESSES": "-2"},
			[]string{`APP_HEALTH_SUCCESSES="-2": must be from 1 to 100`}},
		{"SUCCESSES empty", map[string]string{"APP_HEALTH_SUCCESSES": ""},
			[]string{`APP_HEALTH_SUCCESSES="": must be a whole number`}},
		{"MIN_TERM negative", map[string]string{"APP_HEALTH_MIN_TERM": "-1s"},
			[]string{`APP_HEALTH_MIN_TERM="-1s": must be at least zero and at most 24h0m0s`}},
		{"MIN_TERM over a day", map[string]string{"APP_HEALTH_MIN_TERM": "25h"},
			[]string{`APP_HEALTH_MIN_TERM="25h": must be at least zero and at most 24h0m0s`}},
		{"several at once", map[string]string{"APP_HEALTH_URL": "localhost/healthz", "APP_HEALTH_FAILURES": "0", "APP_HEALTH_SUCCESSES": "1000"},
			[]string{`APP_HEALTH_URL="localhost/healthz": `, `APP_HEALTH_FAILURES="0": `, `APP_HEALTH_SUCCESSES="1000": `}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := minimalEnv()
			maps.Copy(env, tt.env)
			_, err := Load(lookupIn(env), testSources(t))
			lines := errLines(err)
			if len(lines) != len(tt.want) {
				t.Fatalf("Load() error = %v, want %d lines", err, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.HasPrefix(lines[i], w) {
					t.Errorf("Load() error line %q, want it to contain %q", lines[i], w)
				}
			}
		})
	}
}

func TestLoadAcceptsAppHealth(t *testing.T) {
	t.Parallel()
	defaults := AppHealth{FileMaxAge: 10 * time.Second, Period: 2 * time.Second, Timeout: time.Second,
		Failures: 3, Successes: 2, MinTerm: 30 * time.Second}
	with := func(change func(a *AppHealth)) AppHealth {
		a := defaults
		change(&a)
		return a
	}
	tests := []struct {
		name    string
		env     map[string]string
		want    AppHealth
		enabled bool
	}{
		{"off by default", nil, defaults, false},
		{"URL", map[string]string{"APP_HEALTH_URL": "http://127.0.0.1:8080/healthz"},
			with(func(a *AppHealth) { a.URL = "http://127.0.0.1:8080/healthz" }), true},
		{"https URL on IPv6 loopback", map[string]string{"APP_HEALTH_URL": "https://[::1]:8443/ready?verbose=1"},
			with(func(a *AppHealth) { a.URL = "https://[::1]:8443/ready?verbose=1" }), true},
		{"URL without port or path", map[string]string{"APP_HEALTH_URL": "http://localhost"},
			with(func(a *AppHealth) { a.URL = "http://localhost" }), true},
		{"FILE", map[string]string{"APP_HEALTH_FILE": "/shared/app-alive"},
			with(func(a *AppHealth) { a.File = "/shared/app-alive" }), true},
		{"TIMEOUT equal to PERIOD", map[string]string{"APP_HEALTH_URL": "http://localhost", "APP_HEALTH_TIMEOUT": "2s"},
			with(func(a *AppHealth) { a.URL = "http://localhost"; a.Timeout = 2 * time.Second }), true},
		// TIMEOUT over PERIOD is no error while no GET is made.
		{"PERIOD short without URL", map[string]string{"APP_HEALTH_PERIOD": "500ms"},
			with(func(a *AppHealth) { a.Period, a.Timeout = 500*time.Millisecond, 500*time.Millisecond }), false},
		{"FILE_MAX_AGE equal to PERIOD", map[string]string{"APP_HEALTH_FILE": "/a", "APP_HEALTH_FILE_MAX_AGE": "2s"},
			with(func(a *AppHealth) { a.File = "/a"; a.FileMaxAge = 2 * time.Second }), true},
		// FILE_MAX_AGE under PERIOD is no error while no file is checked.
		{"PERIOD long with URL", map[string]string{"APP_HEALTH_URL": "http://localhost", "APP_HEALTH_PERIOD": "1h"},
			with(func(a *AppHealth) { a.URL = "http://localhost"; a.Period = time.Hour }), true},
		{"counts at the bounds", map[string]string{"APP_HEALTH_FAILURES": "1", "APP_HEALTH_SUCCESSES": "100"},
			with(func(a *AppHealth) { a.Failures, a.Successes = 1, 100 }), false},
		{"MIN_TERM zero", map[string]string{"APP_HEALTH_MIN_TERM": "0s"},
			with(func(a *AppHealth) { a.MinTerm = 0 }), false},
		{"MIN_TERM a day", map[string]string{"APP_HEALTH_MIN_TERM": "24h"},
			with(func(a *AppHealth) { a.MinTerm = 24 * time.Hour }), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := minimalEnv()
			maps.Copy(env, tt.env)
			c, err := Load(lookupIn(env), testSources(t))
			if err != nil {
				t.Fatalf("Load() error = %v", err)
			}
			if c.AppHealth != tt.want {
				t.Errorf("Load().AppHealth = %+v, want %+v", c.AppHealth, tt.want)
			}
			if got := c.AppHealth.Enabled(); got != tt.enabled {
				t.Errorf("Load().AppHealth.Enabled() = %v, want %v", got, tt.enabled)
			}
		})
	}
}

// TestVariableFieldsAreUnique: Load names a variable that does not parse by
// its field's name, so an embedded struct must not repeat a field name.
func TestVariableFieldsAreUnique(t *testing.T) {
	t.Parallel()
	seen := map[string]string{}
	for _, v := range variables() {
		if other, ok := seen[v.field]; ok {
			t.Errorf("field %s reads both %s and %s", v.field, other, v.Name)
		}
		seen[v.field] = v.Name
	}
}

// TestAppHealthTimeoutFollowsAShortPeriod: APP_HEALTH_PERIOD=250ms alone is
// no error about APP_HEALTH_TIMEOUT, which the user never set; a timeout
// that is set still must fit the period.
func TestAppHealthTimeoutFollowsAShortPeriod(t *testing.T) {
	base := map[string]string{"LEASE_NAME": "lock", "NAMESPACE": "ns", "APP_HEALTH_URL": "http://127.0.0.1:8080/healthz", "APP_HEALTH_PERIOD": "250ms"}
	cfg, err := Load(lookupIn(base), testSources(t))
	if err != nil {
		t.Fatalf("APP_HEALTH_PERIOD=250ms alone: %v", err)
	}
	if cfg.AppHealth.Timeout != 250*time.Millisecond {
		t.Errorf("APP_HEALTH_TIMEOUT = %s, want the period, 250ms", cfg.AppHealth.Timeout)
	}
	base["APP_HEALTH_TIMEOUT"] = "1s"
	if _, err := Load(lookupIn(base), testSources(t)); err == nil || !strings.Contains(err.Error(), `APP_HEALTH_TIMEOUT="1s"`) {
		t.Errorf("APP_HEALTH_TIMEOUT=1s with a 250ms period: %v, want an error naming it", err)
	}
}
