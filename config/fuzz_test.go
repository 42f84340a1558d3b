package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/election"
)

// FuzzLoad: arbitrary values for every variable, each set or unset (bit i of
// unset unsets the i-th of Variables()). Load never panics; each line of its
// error starts with the name of a variable; and what it accepts keeps the
// rules. The seed corpus is in testdata/fuzz/FuzzLoad.
func FuzzLoad(f *testing.F) {
	vars := Variables()
	if len(vars) != 20 {
		f.Fatalf("Config has %d variables; FuzzLoad takes 20: update it and its corpus", len(vars))
	}
	src := Sources{
		Hostname:      func() (string, error) { return "pod-0", nil },
		NamespaceFile: filepath.Join(f.TempDir(), "no-namespace-file"),
	}
	f.Add(uint32(1<<20-1)&^0b11, "my-lease", "default", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "", "")
	f.Fuzz(func(t *testing.T, unset uint32,
		leaseName, namespace, podNamespace, identity, statusFile, statusDir, healthPort, labelPodRole, podName,
		podIP, roleLabelKey, peerSelector, leaseDuration, renewDeadline, retryPeriod, kubeconfig, logLevel, logFormat,
		podUID, events string) {
		values := []string{leaseName, namespace, podNamespace, identity, statusFile, statusDir, healthPort, labelPodRole, podName,
			podIP, roleLabelKey, peerSelector, leaseDuration, renewDeadline, retryPeriod, kubeconfig, logLevel, logFormat,
			podUID, events}
		env := map[string]string{}
		for i, v := range vars {
			if unset&(1<<i) == 0 {
				env[v.Name] = values[i]
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
		case timings.Validate() != nil:
			t.Fatalf("Load(%q) accepted timings that break a rule: %v", env, timings.Validate())
		case c.LabelPodRole && c.PodName == "":
			t.Fatalf("Load(%q) accepted LABEL_POD_ROLE without POD_NAME", env)
		}
	})
}
