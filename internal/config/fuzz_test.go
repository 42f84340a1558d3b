package config

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/election"
)

// FuzzLoad: arbitrary values for every variable, each set or unset (bit i
// modulo 32 of unset unsets the i-th of Variables(); variables after the
// first 19 reuse their values, so that a new variable needs no new corpus). Load
// never panics; each line of its error starts with the name of a variable; and what it accepts keeps the
// rules. The seed corpus is in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	vars := Variables()
	if len(vars) < 19 {
		f.Fatalf("Config has %d variables; FuzzLoad takes at least 19: update it and its corpus", len(vars))
	}
	src := Sources{
		Hostname:      func() (string, error) { return "pod-0", nil },
		NamespaceFile: filepath.Join(f.TempDir(), "no-namespace-file"),
	}
	f.Add(uint32(1<<19-1)&^0b11, "my-lease", "default", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, unset uint32,
		leaseName, namespace, podNamespace, identity, statusFile, statusDir, healthPort, probeAddress, labelPodRole, podName,
		podIP, roleLabelKey, peerSelector, leaseDuration, renewDeadline, retryPeriod, kubeconfig, logLevel, logFormat string) {
		values := []string{leaseName, namespace, podNamespace, identity, statusFile, statusDir, healthPort, probeAddress, labelPodRole, podName,
			podIP, roleLabelKey, peerSelector, leaseDuration, renewDeadline, retryPeriod, kubeconfig, logLevel, logFormat}
		env := map[string]string{}
		for i, v := range vars {
			if unset&(1<<(i%32)) == 0 {
				env[v.Name] = values[i%len(values)]
			}
		}
		c, err := Load(lookupIn(env), src)
		if err != nil {
			for _, line := range errLines(err) {
				named := false
				for _, v := range vars {
					named = named || strings.HasPrefix(line, v.Name+"=") || strings.HasPrefix(line, v.Name+" ")
				}
				if !named {
					t.Fatalf("Load(%q) error line %q does not start with a variable's name; whole error:\n%v", env, line, err)
				}
			}
			return
		}
		timings := election.Timings{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
		switch {
		case c.LeaseName == "" || c.Namespace == "" || c.Identity == "":
			t.Fatalf("Load(%q) = %+v without error, but with an empty lease, namespace or identity", env, c)
		case c.HealthPort < 1 || c.HealthPort > 65535:
			t.Fatalf("Load(%q) accepted HEALTH_PORT %d", env, c.HealthPort)
		case c.ProbeAddress != "" && addressRule(c.ProbeAddress) != "":
			t.Fatalf("Load(%q) accepted PROBE_ADDRESS %q", env, c.ProbeAddress)
		case timings.Validate() != nil:
			t.Fatalf("Load(%q) accepted timings that break a rule: %v", env, timings.Validate())
		case c.LabelPodRole && c.PodName == "":
			t.Fatalf("Load(%q) accepted LABEL_POD_ROLE without POD_NAME", env)
		case c.MetricsAddr != "" && addressRule(c.MetricsAddr) != "":
			t.Fatalf("Load(%q) accepted METRICS_ADDRESS %q", env, c.MetricsAddr)
		case c.LeaderHTTPAddress != "" && addressRule(c.LeaderHTTPAddress) != "":
			t.Fatalf("Load(%q) accepted LEADER_HTTP_ADDRESS %q", env, c.LeaderHTTPAddress)
		case c.StatusEndpoint != "" && addressRule(c.StatusEndpoint) != "":
			t.Fatalf("Load(%q) accepted STATUS_ENDPOINT %q", env, c.StatusEndpoint)
		case c.CommandStopGrace <= 0 || c.CommandStopGrace > maxStopGrace:
			t.Fatalf("Load(%q) accepted COMMAND_STOP_GRACE %s", env, c.CommandStopGrace)
		}
		if a := c.AppHealth; a.URL != "" && a.File != "" ||
			a.URL != "" && (appHealthURLRule(a.URL) != "" || a.Timeout > a.Period) ||
			a.File != "" && (!filepath.IsAbs(a.File) || a.FileMaxAge < a.Period) ||
			a.Period <= 0 || a.Period > maxAppHealthPeriod || a.Timeout <= 0 || a.Timeout > maxAppHealthPeriod ||
			a.FileMaxAge <= 0 || a.FileMaxAge > maxAppHealthPeriod ||
			a.Failures < 1 || a.Failures > maxAppHealthCount || a.Successes < 1 || a.Successes > maxAppHealthCount ||
			a.MinTerm < 0 || a.MinTerm > maxAppHealthMinTerm {
			t.Fatalf("Load(%q) accepted app-health settings that break a rule: %+v", env, a)
		}
		if c.PodIP != "" {
			if _, err := netip.ParseAddr(c.PodIP); err != nil {
				t.Fatalf("Load(%q) accepted a POD_IP that is no IP address: %v", env, err)
			}
		}
		if c.ServiceName != "" {
			if _, err := ParseServicePorts(c.ServicePorts); err != nil {
				t.Fatalf("Load(%q) accepted SERVICE_PORTS that do not parse: %v", env, err)
			}
			if _, err := ParsePodIP(c.PodIP); err != nil {
				t.Fatalf("Load(%q) accepted a POD_IP that does not parse: %v", env, err)
			}
			if c.ServiceNamespace == "" {
				t.Fatalf("Load(%q) left SERVICE_NAMESPACE empty", env)
			}
		}
	})
}
