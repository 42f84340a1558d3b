// Package apphealth checks the health of the app next to the sidecar, by an
// HTTP GET (as a kubelet httpGet probe does) or by the age of a heartbeat
// file the app touches, and turns the results into a healthy or unhealthy
// verdict with hysteresis, so that the election campaigns and leads only
// while the app is healthy without flapping on a single bad check.
package apphealth

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// Config configures a Checker. Exactly one of URL and File is set.
type Config struct {
	// URL is checked by an HTTP GET. A status from 200 to 399 passes, as
	// for a kubelet httpGet probe. Redirects to the same host are followed
	// (at most 10); a redirect to another host is not, and its 3xx passes,
	// as the kubelet does.
	URL string
	// File is a heartbeat file the app touches. It fails when missing or
	// when its modification time is more than MaxAge before now.
	File string
	// MaxAge is the oldest a heartbeat may be; required with File.
	MaxAge time.Duration
	// Period is the time between the starts of two checks. Required.
	Period time.Duration
	// Timeout bounds one HTTP GET; required with URL, at most Period.
	Timeout time.Duration
	// Failures is how many failed checks in a row make a healthy app
	// unhealthy (at least 1).
	Failures int
	// Successes is how many passed checks in a row make an app healthy,
	// at the start and after it was unhealthy (at least 1).
	Successes int
	// Clock paces the checks and dates the heartbeat; clock.RealClock{}
	// when nil. The HTTP timeout is real time, whatever the clock.
	Clock clock.WithTicker
	// HTTP sends the GET; nil: a client of the Checker's own, like the
	// kubelet's (no proxy, no keep-alive, TLS certificates not verified).
	// Its CheckRedirect is replaced by the same-host rule.
	HTTP *http.Client
	// Log receives one line per verdict change; slog.Default() when nil.
	Log *slog.Logger
}

// Enabled says whether a check is configured at all.
func (c Config) Enabled() bool { return c.URL != "" || c.File != "" }

// State is the Checker's verdict and its last check, for /status (the
// JSON names follow the other outputs' states there).
type State struct {
	// Healthy is the verdict: false until Successes checks passed in a
	// row, then false again after Failures failed in a row.
	Healthy bool `json:"healthy"`
	// Checked says the verdict is known: false at the start until
	// Successes checks passed or Failures failed in a row. Until then the
	// app counts as not healthy.
	Checked bool `json:"checked"`
	// Reason describes the last check, such as
	// "GET http://127.0.0.1:8080/healthz: status 503".
	Reason string `json:"reason,omitempty"`
	// LastPassed is the result of the last check.
	LastPassed bool `json:"last_passed"`
	// Consecutive is how many checks in a row ended as the last one did.
	Consecutive int `json:"consecutive"`
	// LastCheck is when the last check started, on the Checker's clock.
	LastCheck time.Time `json:"last_check,omitzero"`
}

// Checker checks the app every Period. Its methods are safe for concurrent
// use.
type Checker struct {
	cfg    Config
	clock  clock.WithTicker
	client *http.Client
	log    *slog.Logger

	mu    sync.Mutex
	state State
}

// maxRedirects is the kubelet's bound for a probe.
const maxRedirects = 10

// maxBody is how much of a response body is read, as the kubelet reads
// at most 10 KiB of a probe's: enough to let the app finish writing, not
// enough for a runaway body to hold up the check.
const maxBody = 10 << 10

// New validates cfg and returns a Checker that has not checked yet.
func New(cfg Config) (*Checker, error) {
	var errs []error
	switch {
	case cfg.URL != "" && cfg.File != "":
		errs = append(errs, errors.New("set only one of URL and File"))
	case cfg.URL != "":
		if err := checkURL(cfg.URL); err != nil {
			errs = append(errs, err)
		}
		if cfg.Timeout <= 0 || cfg.Timeout > cfg.Period {
			errs = append(errs, fmt.Errorf("Timeout %s must be greater than zero and at most Period %s", cfg.Timeout, cfg.Period))
		}
	case cfg.File != "":
		if cfg.MaxAge <= 0 {
			errs = append(errs, fmt.Errorf("MaxAge %s must be greater than zero", cfg.MaxAge))
		}
	default:
		errs = append(errs, errors.New("set URL or File"))
	}
	if cfg.Period <= 0 {
		errs = append(errs, fmt.Errorf("Period %s must be greater than zero", cfg.Period))
	}
	if cfg.Failures < 1 {
		errs = append(errs, fmt.Errorf("Failures %d must be at least 1", cfg.Failures))
	}
	if cfg.Successes < 1 {
		errs = append(errs, fmt.Errorf("Successes %d must be at least 1", cfg.Successes))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("app health check: %w", err)
	}

	c := &Checker{cfg: cfg, clock: cfg.Clock, log: cfg.Log}
	if c.clock == nil {
		c.clock = clock.RealClock{}
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if cfg.URL != "" {
		c.client = newClient(cfg.HTTP, cfg.Timeout)
	}
	return c, nil
}

// checkURL accepts an absolute http or https URL with a host.
func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("URL %q: %w", s, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return fmt.Errorf("URL %q must be an absolute http or https URL with a host", s)
	}
	return nil
}

// newClient is base (or a client like the kubelet's prober) with the
// kubelet's redirect rule.
func newClient(base *http.Client, timeout time.Duration) *http.Client {
	var cl http.Client
	if base != nil {
		cl = *base
	} else {
		t := http.DefaultTransport.(*http.Transport).Clone()
		// The app is next door: a proxy from the environment is wrong
		// here. A new connection per check also checks that the app still
		// accepts them; an app with a self-signed certificate passes, as
		// under a kubelet probe.
		t.Proxy = nil
		t.DisableKeepAlives = true
		t.DisableCompression = true
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // a health check sends nothing and trusts no answer
		cl = http.Client{Transport: t, Timeout: timeout}
	}
	cl.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if req.URL.Hostname() != via[0].URL.Hostname() {
			return http.ErrUseLastResponse
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}
	return &cl
}

// State returns the verdict and the last check.
func (c *Checker) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Run checks at once and then every Period until ctx ends. It calls report,
// if not nil, whenever the verdict becomes known or changes: the first time
// the app is healthy, the first time it is unhealthy (Failures failed checks
// before it ever was healthy), and on every change after that. report is
// called from Run's goroutine and should not block for long: the next
// check waits for it.
func (c *Checker) Run(ctx context.Context, report func(healthy bool, reason string)) {
	// The ticker exists before the first check, so a tick during that
	// check is not lost.
	t := c.clock.NewTicker(c.cfg.Period)
	defer t.Stop()
	for {
		c.checkOnce(ctx, report)
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
	}
}

// checkOnce runs one check and applies its result.
func (c *Checker) checkOnce(ctx context.Context, report func(bool, string)) {
	now := c.clock.Now()
	passed, reason := c.check(ctx, now)
	if ctx.Err() != nil {
		return // cut short by the end of Run, not by the app
	}
	changed, st := c.record(now, passed, reason)
	if !changed {
		c.log.Debug("app health check", "passed", passed, "reason", reason, "consecutive", st.Consecutive)
		return
	}
	if st.Healthy {
		c.log.Info("app is healthy", "reason", reason, "passed_in_a_row", st.Consecutive)
	} else {
		c.log.Warn("app is unhealthy", "reason", reason, "failed_in_a_row", st.Consecutive)
	}
	if report != nil {
		report(st.Healthy, reason)
	}
}

// record applies one result to the state and says whether the verdict
// became known or changed.
func (c *Checker) record(now time.Time, passed bool, reason string) (bool, State) {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.state
	if passed == s.LastPassed && s.Consecutive > 0 {
		s.Consecutive++
	} else {
		s.LastPassed, s.Consecutive = passed, 1
	}
	s.Reason, s.LastCheck = reason, now
	changed := false
	switch {
	case passed && !s.Healthy && s.Consecutive >= c.cfg.Successes:
		s.Healthy, s.Checked, changed = true, true, true
	case !passed && (s.Healthy || !s.Checked) && s.Consecutive >= c.cfg.Failures:
		s.Healthy, s.Checked, changed = false, true, true
	}
	return changed, *s
}

// check runs the configured check once.
func (c *Checker) check(ctx context.Context, now time.Time) (bool, string) {
	if c.cfg.URL != "" {
		return c.get(ctx)
	}
	return c.heartbeat(now)
}

// get is one HTTP GET of the URL.
func (c *Checker) get(ctx context.Context) (bool, string) {
	what := "GET " + c.cfg.URL
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.URL, nil)
	if err != nil {
		return false, fmt.Sprintf("%s: %v", what, err)
	}
	req.Header.Set("User-Agent", "leader-elector-apphealth")
	req.Header.Set("Accept", "*/*")
	resp, err := c.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
			return false, fmt.Sprintf("%s: no answer within %s (APP_HEALTH_TIMEOUT)", what, c.cfg.Timeout)
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // its text repeats the method and URL
		}
		return false, fmt.Sprintf("%s: %v", what, err)
	}
	// Drained, up to a bound, so that the app's write does not fail.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	_ = resp.Body.Close()
	reason := fmt.Sprintf("%s: status %d", what, resp.StatusCode)
	if loc := resp.Request.URL; loc.String() != c.cfg.URL {
		reason += " from " + loc.String()
	}
	if loc, err := resp.Location(); err == nil && loc.Hostname() != resp.Request.URL.Hostname() {
		reason += ", a redirect to " + loc.String() + " on another host, not followed"
	}
	return resp.StatusCode >= 200 && resp.StatusCode < 400, reason
}

// isTimeout recognises the client's own Timeout.
func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// heartbeat checks the age of the heartbeat file.
func (c *Checker) heartbeat(now time.Time) (bool, string) {
	what := "heartbeat " + c.cfg.File
	fi, err := os.Stat(c.cfg.File)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, what + " is missing"
	case err != nil:
		return false, fmt.Sprintf("%s: %v", what, err)
	case fi.IsDir():
		return false, what + " is a directory, not a file"
	}
	age := max(now.Sub(fi.ModTime()), 0) // a clock a little ahead of the app's is no failure
	if age > c.cfg.MaxAge {
		return false, fmt.Sprintf("%s is %s old (APP_HEALTH_FILE_MAX_AGE %s)", what, roundAge(age, c.cfg.MaxAge), c.cfg.MaxAge)
	}
	return true, fmt.Sprintf("%s is %s old", what, roundAge(age, c.cfg.MaxAge))
}

// roundAge rounds to a tenth of a second, unless that would hide that age
// exceeds (or not) maxAge.
func roundAge(age, maxAge time.Duration) time.Duration {
	r := age.Round(100 * time.Millisecond)
	if (r > maxAge) != (age > maxAge) {
		return age.Round(time.Millisecond)
	}
	return r
}
