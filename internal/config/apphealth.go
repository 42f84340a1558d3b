package config

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"
)

// AppHealth configures the check of the app's health (package apphealth):
// a replica campaigns and leads only while its app is healthy. Config
// embeds it; use it as c.AppHealth.URL and so on.
type AppHealth struct {
	URL        string        `env:"APP_HEALTH_URL" desc:"HTTP GET of the app, such as http://127.0.0.1:8080/healthz, every APP_HEALTH_PERIOD; a status from 200 to 399 passes, as for a kubelet httpGet probe; the replica campaigns and leads only while its app is healthy; empty: off"`
	File       string        `env:"APP_HEALTH_FILE" desc:"absolute path of a heartbeat file the app touches, such as /shared/app-alive on the shared emptyDir, instead of APP_HEALTH_URL; a check fails when it is missing or older than APP_HEALTH_FILE_MAX_AGE; empty: off"`
	FileMaxAge time.Duration `env:"APP_HEALTH_FILE_MAX_AGE" default:"10s" desc:"the oldest the heartbeat of APP_HEALTH_FILE may be to pass; at least APP_HEALTH_PERIOD"`
	Period     time.Duration `env:"APP_HEALTH_PERIOD" default:"2s" desc:"how often the app's health is checked"`
	Timeout    time.Duration `env:"APP_HEALTH_TIMEOUT" default:"1s" desc:"how long the GET of APP_HEALTH_URL may take before it fails; at most APP_HEALTH_PERIOD; unset, 1s or APP_HEALTH_PERIOD if that is shorter"`
	Failures   int           `env:"APP_HEALTH_FAILURES" default:"3" desc:"failed checks in a row that make a healthy app unhealthy (1 to 100)"`
	Successes  int           `env:"APP_HEALTH_SUCCESSES" default:"2" desc:"passed checks in a row that make the app healthy, at the start and after it was unhealthy (1 to 100)"`
	MinTerm    time.Duration `env:"APP_HEALTH_MIN_TERM" default:"30s" desc:"a leader does not step down for its app's health sooner than this after acquiring the Lease; 0: at once"`
}

// Enabled says whether the app's health is checked.
func (a AppHealth) Enabled() bool { return a.URL != "" || a.File != "" }

// Bounds of the app-health settings: larger values are typos.
const (
	maxAppHealthPeriod  = time.Hour
	maxAppHealthMinTerm = 24 * time.Hour
	maxAppHealthCount   = 100
)

// resolveAppHealth checks the app-health variables. The bounds hold
// whether or not a check is on; the rules relating a setting to the check
// only with that check on.
func (c *Config) resolveAppHealth(p *problems) {
	a := c.AppHealth
	bad := p.bad
	if a.URL != "" && a.File != "" {
		p.add(&varError{key: "APP_HEALTH_URL", msg: fmt.Sprintf(
			"APP_HEALTH_URL=%q and APP_HEALTH_FILE=%q: set only one; both say how the app's health is checked", a.URL, a.File)})
	}
	if a.URL != "" {
		if rule := appHealthURLRule(a.URL); rule != "" {
			bad("APP_HEALTH_URL", a.URL, rule)
		}
	}
	if a.File != "" && !filepath.IsAbs(a.File) {
		bad("APP_HEALTH_FILE", a.File, "must be an absolute path, such as /shared/app-alive")
	}

	// ok reports d out of (0, maxAppHealthPeriod] and says whether it is in.
	ok := func(key string, d time.Duration) bool {
		if d <= 0 || d > maxAppHealthPeriod {
			bad(key, d, "must be greater than zero and at most "+maxAppHealthPeriod.String())
			return false
		}
		return true
	}
	periodOK := ok("APP_HEALTH_PERIOD", a.Period)
	if _, set := p.lookup("APP_HEALTH_TIMEOUT"); !set && periodOK && a.Timeout > a.Period {
		// The default follows a shorter period, rather than failing on a
		// variable the user never set.
		a.Timeout, c.AppHealth.Timeout = a.Period, a.Period
	}
	if ok("APP_HEALTH_TIMEOUT", a.Timeout) && periodOK && a.URL != "" && a.Timeout > a.Period {
		bad("APP_HEALTH_TIMEOUT", a.Timeout, fmt.Sprintf("must be at most APP_HEALTH_PERIOD (%s): one GET must end before the next begins", a.Period))
	}
	if ok("APP_HEALTH_FILE_MAX_AGE", a.FileMaxAge) && periodOK && a.File != "" && a.FileMaxAge < a.Period {
		bad("APP_HEALTH_FILE_MAX_AGE", a.FileMaxAge, fmt.Sprintf("must be at least APP_HEALTH_PERIOD (%s)", a.Period))
	}
	for _, v := range []struct {
		key string
		n   int
	}{{"APP_HEALTH_FAILURES", a.Failures}, {"APP_HEALTH_SUCCESSES", a.Successes}} {
		if v.n < 1 || v.n > maxAppHealthCount {
			bad(v.key, v.n, fmt.Sprintf("must be from 1 to %d", maxAppHealthCount))
		}
	}
	if a.MinTerm < 0 || a.MinTerm > maxAppHealthMinTerm {
		bad("APP_HEALTH_MIN_TERM", a.MinTerm, "must be at least zero and at most "+maxAppHealthMinTerm.String())
	}
}

// appHealthURLRule returns the rule APP_HEALTH_URL breaks, or "".
func appHealthURLRule(s string) string {
	const rule = "must be an absolute http:// or https:// URL with a host, such as http://127.0.0.1:8080/healthz"
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return rule
	}
	if p := u.Port(); p != "" {
		if n, ok := decimalPort(p); !ok || n < 1 || n > 65535 {
			return rule + ", with a port from 1 to 65535"
		}
	}
	return ""
}
