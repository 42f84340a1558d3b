package compat

import (
	"errors"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/internal/config"
)

// environment is a lookup of vars alone, in place of the process's.
func environment(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// sources has the hostname pod-0 and no namespace file.
func sources(t testing.TB) config.Sources {
	return config.Sources{
		Hostname:      func() (string, error) { return "pod-0", nil },
		NamespaceFile: filepath.Join(t.TempDir(), "no-namespace-file"),
	}
}

// naiserator is the invocation naiserator writes into every pod with
// leader election.
var naiserator = []string{"--election=myapp", "--election-namespace=ns", "--http=localhost:4040", "--probe-address=0.0.0.0:4041"}

// awaitExample is the environment of k8s-await-election's
// examples/singleton-service.yml, as the kubelet fills it in.
func awaitExample() map[string]string {
	return map[string]string{
		"K8S_AWAIT_ELECTION_ENABLED":            "1",
		"K8S_AWAIT_ELECTION_NAME":               "my-server",
		"K8S_AWAIT_ELECTION_LOCK_NAME":          "my-server",
		"K8S_AWAIT_ELECTION_LOCK_NAMESPACE":     "default",
		"K8S_AWAIT_ELECTION_IDENTITY":           "my-server-5d9c7-abcde",
		"K8S_AWAIT_ELECTION_STATUS_ENDPOINT":    ":9999",
		"K8S_AWAIT_ELECTION_SERVICE_NAME":       "my-service",
		"K8S_AWAIT_ELECTION_SERVICE_NAMESPACE":  "default",
		"K8S_AWAIT_ELECTION_SERVICE_PORTS_JSON": `[{"name":"my-port","port":1024}]`,
		"K8S_AWAIT_ELECTION_POD_IP":             "10.0.0.5",
		"K8S_AWAIT_ELECTION_NODE_NAME":          "node-1",
	}
}

func with(base map[string]string, kv ...string) map[string]string {
	m := maps.Clone(base)
	if m == nil {
		m = map[string]string{}
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestTranslate: each front end's typical invocations, translated into our
// variables and loaded by config.Load.
func TestTranslate(t *testing.T) {
	t.Parallel()
	naisEnv := map[string]string{
		"LEASE_NAME": "myapp", "NAMESPACE": "ns", "LEADER_HTTP_ADDRESS": "localhost:4040",
		"PROBE_ADDRESS": "0.0.0.0:4041", "METRICS_ADDRESS": "0.0.0.0:29090", "LOG_FORMAT": "json",
	}
	gcrDefaults := map[string]string{"LEASE_DURATION": "10s", "RENEW_DEADLINE": "5s", "RETRY_PERIOD": "2.5s", "PROBE_ADDRESS": "-"}
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		frontEnd FrontEnd
		want     map[string]string // Translation.Env()
		command  []string
		warning  string // in Warnings; "" for none
		check    func(t *testing.T, c config.Config)
	}{
		{
			name: "nais/elector as naiserator starts it", args: naiserator, env: map[string]string{"ELECTOR_LOG_FORMAT": "json"},
			frontEnd: NAIS, want: naisEnv,
			check: func(t *testing.T, c config.Config) {
				want := config.Config{LeaseName: "myapp", Namespace: "ns", Identity: "pod-0", HealthPort: 8080, ProbeAddress: "0.0.0.0:4041",
					RoleLabelKey: "role", LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
					LogLevel: "info", LogFormat: "json", LeaderHTTPAddress: "localhost:4040", CommandStopGrace: 10 * time.Second, MetricsAddr: "0.0.0.0:29090", Events: true,
					AppHealth: config.AppHealth{FileMaxAge: 10 * time.Second, Period: 2 * time.Second, Timeout: time.Second,
						Failures: 3, Successes: 2, MinTerm: 30 * time.Second},
					StatusFile: "-", Control: config.Control{ControlSocketOff: `CONTROL_SOCKET="-"`}}
				if !reflect.DeepEqual(c, want) {
					t.Errorf("config =\n%+v\nwant\n%+v", c, want)
				}
			},
		},
		{
			name: "nais/elector from ELECTOR_* alone",
			env: map[string]string{"ELECTOR_ELECTION": "myapp", "ELECTOR_ELECTION_NAMESPACE": "ns", "ELECTOR_HTTP": "localhost:4040",
				"ELECTOR_PROBE_ADDRESS": "0.0.0.0:4041", "ELECTOR_LOG_FORMAT": "json"},
			frontEnd: NAIS, want: naisEnv,
			check: func(t *testing.T, c config.Config) {
				if c.LeaseName != "myapp" || c.Namespace != "ns" || c.HealthAddress() != "0.0.0.0:4041" || c.LogFormat != "json" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "nais/elector's defaults", args: []string{"--election=myapp", "--election-namespace=ns"},
			frontEnd: NAIS,
			want: map[string]string{"LEASE_NAME": "myapp", "NAMESPACE": "ns", "LEADER_HTTP_ADDRESS": "0.0.0.0:27070",
				"PROBE_ADDRESS": "0.0.0.0:28080", "METRICS_ADDRESS": "0.0.0.0:29090"},
			check: func(t *testing.T, c config.Config) {
				if c.Identity != "pod-0" || c.LeaseDuration != 15*time.Second || c.RenewDeadline != 10*time.Second || c.RetryPeriod != 2*time.Second {
					t.Errorf("config = %+v, want the hostname and our default timings", c)
				}
			},
		},
		{
			name:     "nais/elector with values after a space, and Go's -flag",
			args:     []string{"--election", "myapp", "-election-namespace", "ns", "-http=localhost:4040", "--probe-address", "0.0.0.0:4041", "--log-format", "json"},
			frontEnd: NAIS, want: naisEnv,
		},
		{
			name:     "nais/elector flag and variable agreeing",
			args:     naiserator,
			env:      map[string]string{"ELECTOR_ELECTION": "myapp", "ELECTOR_LOG_FORMAT": "json", "LEASE_NAME": "myapp"},
			frontEnd: NAIS, want: naisEnv,
		},
		{
			name:     "nais/elector's logrus levels",
			args:     []string{"--election=myapp", "--election-namespace=ns", "--log-level=warning"},
			frontEnd: NAIS,
			check: func(t *testing.T, c config.Config) {
				if c.LogLevel != "warn" {
					t.Errorf("LogLevel = %q, want warn", c.LogLevel)
				}
			},
		},
		{
			name:     "nais/elector with HEALTH_PORT: no default probe address",
			args:     []string{"--election=myapp", "--election-namespace=ns"},
			env:      map[string]string{"HEALTH_PORT": "9000"},
			frontEnd: NAIS,
			want:     map[string]string{"LEASE_NAME": "myapp", "NAMESPACE": "ns", "LEADER_HTTP_ADDRESS": "0.0.0.0:27070", "METRICS_ADDRESS": "0.0.0.0:29090"},
			check: func(t *testing.T, c config.Config) {
				if c.HealthAddress() != ":9000" {
					t.Errorf("HealthAddress = %q, want :9000", c.HealthAddress())
				}
			},
		},
		{
			name:     "nais/elector with our own variables besides",
			args:     naiserator,
			env:      map[string]string{"LEASE_DURATION": "20s", "LABEL_POD_ROLE": "true", "POD_NAME": "myapp-0"},
			frontEnd: NAIS,
			check: func(t *testing.T, c config.Config) {
				if c.LeaseDuration != 20*time.Second || !c.LabelPodRole || c.PodName != "myapp-0" {
					t.Errorf("config = %+v, want our variables applied", c)
				}
			},
		},
		{
			name: "contrib leader-elector with its own flags", args: []string{"--election=example", "--http=0.0.0.0:4040", "--id=x", "--ttl=10s"},
			env: map[string]string{"POD_NAMESPACE": "ns"}, frontEnd: GCR,
			want: with(gcrDefaults, "LEASE_NAME", "example", "LEADER_HTTP_ADDRESS", "0.0.0.0:4040", "IDENTITY", "x"),
			check: func(t *testing.T, c config.Config) {
				if c.LeaseName != "example" || c.Namespace != "ns" || c.Identity != "x" ||
					c.LeaseDuration != 10*time.Second || c.RenewDeadline != 5*time.Second || c.RetryPeriod != 2500*time.Millisecond {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "contrib leader-elector as its README starts it", args: []string{"--election=example", "--http=0.0.0.0:4040"},
			env: map[string]string{"POD_NAMESPACE": "ns"}, frontEnd: GCR,
			want: with(gcrDefaults, "LEASE_NAME", "example", "LEADER_HTTP_ADDRESS", "0.0.0.0:4040"),
			check: func(t *testing.T, c config.Config) {
				if c.Identity != "pod-0" || c.Namespace != "ns" {
					t.Errorf("config = %+v, want the hostname and the pod's namespace", c)
				}
			},
		},
		{
			name: "contrib leader-elector without --http", args: []string{"--election=example"},
			env: map[string]string{"NAMESPACE": "ns"}, frontEnd: GCR,
			want: with(gcrDefaults, "LEASE_NAME", "example"),
		},
		{
			name: "contrib leader-elector: --ttl after a space, in-cluster credentials", args: []string{"--election", "example", "--ttl", "20s", "--use-cluster-credentials"},
			env: map[string]string{"NAMESPACE": "ns"}, frontEnd: GCR,
			want: map[string]string{"LEASE_NAME": "example", "LEASE_DURATION": "20s", "RENEW_DEADLINE": "10s", "RETRY_PERIOD": "5s",
				"KUBECONFIG": "", "PROBE_ADDRESS": "-"},
		},
		{
			name: "contrib leader-elector: the longest --ttl", args: []string{"--election=example", "--ttl=37s", "--election-namespace=ns"},
			frontEnd: GCR,
			check: func(t *testing.T, c config.Config) {
				if c.LeaseDuration != 37*time.Second || c.RenewDeadline != 18500*time.Millisecond || c.RetryPeriod != 9250*time.Millisecond {
					t.Errorf("timings = %s/%s/%s", c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
				}
			},
		},
		{
			name: "contrib leader-elector: our timings instead of its default --ttl", args: []string{"--election=example"},
			env: map[string]string{"NAMESPACE": "ns", "LEASE_DURATION": "30s"}, frontEnd: GCR,
			want: map[string]string{"LEASE_NAME": "example", "PROBE_ADDRESS": "-"},
			check: func(t *testing.T, c config.Config) {
				if c.LeaseDuration != 30*time.Second || c.RenewDeadline != 10*time.Second {
					t.Errorf("timings = %s/%s, want 30s and our default 10s", c.LeaseDuration, c.RenewDeadline)
				}
			},
		},
		{
			name: "shared flags with --election-namespace are nais/elector's", args: []string{"--election=example", "--election-namespace=ns", "--http=0.0.0.0:4040"},
			frontEnd: NAIS,
			want: map[string]string{"LEASE_NAME": "example", "NAMESPACE": "ns", "LEADER_HTTP_ADDRESS": "0.0.0.0:4040",
				"PROBE_ADDRESS": "0.0.0.0:28080", "METRICS_ADDRESS": "0.0.0.0:29090"},
		},
		{
			name: "k8s-await-election as its example starts it", args: []string{"mycmd", "arg"}, env: awaitExample(),
			frontEnd: AwaitElection, command: []string{"mycmd", "arg"},
			want: map[string]string{"LEASE_NAME": "my-server", "NAMESPACE": "default", "IDENTITY": "my-server-5d9c7-abcde",
				"STATUS_ENDPOINT": ":9999", "SERVICE_NAME": "my-service", "SERVICE_NAMESPACE": "default",
				"SERVICE_PORTS": `[{"name":"my-port","port":1024}]`, "POD_IP": "10.0.0.5", "NODE_NAME": "node-1"},
			check: func(t *testing.T, c config.Config) {
				if c.LeaseName != "my-server" || c.Namespace != "default" || c.Identity != "my-server-5d9c7-abcde" || c.PodIP != "10.0.0.5" ||
					c.LeaseDuration != 15*time.Second || c.RenewDeadline != 10*time.Second || c.RetryPeriod != 2*time.Second {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "k8s-await-election's timings in seconds", args: []string{"mycmd"},
			env: with(awaitExample(), "K8S_AWAIT_ELECTION_LEASE_DURATION", "20", "K8S_AWAIT_ELECTION_RENEW_DEADLINE", "12",
				"K8S_AWAIT_ELECTION_RETRY_PERIOD", "3", "LEASE_DURATION", "20000ms"),
			frontEnd: AwaitElection, command: []string{"mycmd"},
			check: func(t *testing.T, c config.Config) {
				if c.LeaseDuration != 20*time.Second || c.RenewDeadline != 12*time.Second || c.RetryPeriod != 3*time.Second {
					t.Errorf("timings = %s/%s/%s, want 20s/12s/3s", c.LeaseDuration, c.RenewDeadline, c.RetryPeriod)
				}
			},
		},
		{
			name: "k8s-await-election with the required variables only", args: []string{"--", "mycmd", "--flag"},
			env: map[string]string{"K8S_AWAIT_ELECTION_ENABLED": "true", "K8S_AWAIT_ELECTION_NAME": "e",
				"K8S_AWAIT_ELECTION_LOCK_NAME": "lock", "K8S_AWAIT_ELECTION_LOCK_NAMESPACE": "ns", "K8S_AWAIT_ELECTION_IDENTITY": "me",
				"K8S_AWAIT_ELECTION_SERVICE_NAME": ""},
			frontEnd: AwaitElection, command: []string{"mycmd", "--flag"},
			want: map[string]string{"LEASE_NAME": "lock", "NAMESPACE": "ns", "IDENTITY": "me"},
		},
		{
			name: "k8s-await-election with ENABLED=false still elects", args: []string{"mycmd"},
			env:      with(awaitExample(), "K8S_AWAIT_ELECTION_ENABLED", "false"),
			frontEnd: AwaitElection, command: []string{"mycmd"},
			warning: `K8S_AWAIT_ELECTION_ENABLED="false" reads as false, but like k8s-await-election any non-empty value enables the election`,
		},
		{
			name: "k8s-await-election with ENABLED=0 still elects", args: []string{"mycmd"},
			env:      with(awaitExample(), "K8S_AWAIT_ELECTION_ENABLED", "0"),
			frontEnd: AwaitElection, command: []string{"mycmd"},
			warning: `K8S_AWAIT_ELECTION_ENABLED="0" reads as false`,
		},
		{
			name: "k8s-await-election without ENABLED execs the command", args: []string{"mycmd", "arg"},
			env:      with(awaitExample(), "K8S_AWAIT_ELECTION_ENABLED", ""),
			frontEnd: Exec, command: []string{"mycmd", "arg"},
		},
		{
			name: "a command without any variable is executed", args: []string{"mycmd", "--help"},
			frontEnd: Exec, command: []string{"mycmd", "--help"},
		},
		{
			name: "our own variables", env: map[string]string{"LEASE_NAME": "lock", "NAMESPACE": "ns"},
			frontEnd: Own, want: map[string]string{},
			check: func(t *testing.T, c config.Config) {
				if c.LeaseName != "lock" || c.HealthAddress() != ":8080" {
					t.Errorf("config = %+v", c)
				}
			},
		},
		{
			name: "our own variables and a command for the gatekeeper", args: []string{"--", "mycmd", "arg"},
			env:      map[string]string{"LEASE_NAME": "lock", "NAMESPACE": "ns"},
			frontEnd: Own, command: []string{"mycmd", "arg"}, want: map[string]string{},
		},
		{
			name: "naiserator's variables for the app are not the elector's",
			env: map[string]string{"LEASE_NAME": "lock", "NAMESPACE": "ns", "ELECTOR_PATH": "localhost:4040",
				"ELECTOR_GET_URL": "http://localhost:4040/", "ELECTOR_SSE_URL": "http://localhost:4040/sse", "ELECTOR_ELECTION": ""},
			frontEnd: Own, want: map[string]string{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, err := Translate(tt.args, environment(tt.env))
			if err != nil {
				t.Fatalf("Translate(%q) error:\n%v", tt.args, err)
			}
			if tr.FrontEnd != tt.frontEnd {
				t.Errorf("front end = %q, want %q", tr.FrontEnd, tt.frontEnd)
			}
			if !slices.Equal(tr.Command, tt.command) {
				t.Errorf("command = %q, want %q", tr.Command, tt.command)
			}
			if want := withDropInDefaults(tt.want, tt.frontEnd); want != nil && !maps.Equal(tr.Env(), want) {
				t.Errorf("translated variables =\n%v\nwant\n%v", tr.Env(), want)
			}
			switch {
			case tt.warning == "" && len(tr.Warnings) > 0:
				t.Errorf("warnings = %q, want none", tr.Warnings)
			case tt.warning != "" && (len(tr.Warnings) != 1 || !strings.Contains(tr.Warnings[0], tt.warning)):
				t.Errorf("warnings = %q, want one containing %q", tr.Warnings, tt.warning)
			}
			if tr.FrontEnd == Exec {
				return // no configuration: nothing else runs
			}
			c, err := config.Load(tr.Lookup, sources(t))
			if err != nil {
				t.Fatalf("config.Load of the translation %v:\n%v", tr.Env(), tr.Explain(err))
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

// TestTranslateRefuses: conflicts and bad values, each one line naming the
// flags or variables as the user wrote them, and their values; before
// config.Load (Translate) or from it (Explain).
func TestTranslateRefuses(t *testing.T) {
	t.Parallel()
	nais := []string{"--election=myapp", "--election-namespace=ns"}
	gcrArgs := []string{"--election=example", "--ttl=10s"}
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want []string // in the error, which has one line
	}{
		// Two names for one setting that disagree.
		{name: "flag and ELECTOR_ variable", args: nais, env: map[string]string{"ELECTOR_ELECTION": "b"},
			want: []string{`--election="myapp" and ELECTOR_ELECTION="b"`, "set only one"}},
		{name: "flag and our variable", args: nais, env: map[string]string{"LEASE_NAME": "b"},
			want: []string{`--election="myapp" and LEASE_NAME="b"`, "set only one"}},
		{name: "ELECTOR_ variable and our variable", env: map[string]string{"ELECTOR_ELECTION": "a", "ELECTOR_ELECTION_NAMESPACE": "ns", "NAMESPACE": "other"},
			want: []string{`ELECTOR_ELECTION_NAMESPACE="ns" and NAMESPACE="other"`}},
		{name: "translated log level and ours", args: append(slices.Clone(nais), "--log-level=trace"), env: map[string]string{"LOG_LEVEL": "info"},
			want: []string{`--log-level="trace" and LOG_LEVEL="info"`}},
		{name: "--probe-address and HEALTH_PORT", args: append(slices.Clone(nais), "--probe-address=0.0.0.0:4041"), env: map[string]string{"HEALTH_PORT": "8080"},
			want: []string{`--probe-address="0.0.0.0:4041" and HEALTH_PORT="8080"`, "set only one"}},
		{name: "--probe-address and PROBE_ADDRESS", args: append(slices.Clone(nais), "--probe-address=0.0.0.0:4041"), env: map[string]string{"PROBE_ADDRESS": ":8080"},
			want: []string{`--probe-address="0.0.0.0:4041" and PROBE_ADDRESS=":8080"`}},
		{name: "--http and LEADER_HTTP_ADDRESS", args: []string{"--election=example", "--http=:4040"}, env: map[string]string{"LEADER_HTTP_ADDRESS": ":5050"},
			want: []string{`--http=":4040" and LEADER_HTTP_ADDRESS=":5050"`}},
		{name: "--ttl and LEASE_DURATION", args: gcrArgs, env: map[string]string{"LEASE_DURATION": "15s"},
			want: []string{`--ttl="10s" and LEASE_DURATION="15s"`}},
		{name: "--id and IDENTITY", args: []string{"--election=example", "--id=x"}, env: map[string]string{"IDENTITY": "y"},
			want: []string{`--id="x" and IDENTITY="y"`}},
		{name: "--use-cluster-credentials and KUBECONFIG", args: []string{"--election=example", "--use-cluster-credentials"}, env: map[string]string{"KUBECONFIG": "/k"},
			want: []string{`--use-cluster-credentials="true" and KUBECONFIG="/k"`}},
		{name: "LOCK_NAME and LEASE_NAME", args: []string{"mycmd"}, env: with(awaitExample(), "LEASE_NAME", "b"),
			want: []string{`K8S_AWAIT_ELECTION_LOCK_NAME="my-server" and LEASE_NAME="b"`}},
		{name: "K8S timing and ours", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_RETRY_PERIOD", "3", "RETRY_PERIOD", "2s"),
			want: []string{`K8S_AWAIT_ELECTION_RETRY_PERIOD="3" and RETRY_PERIOD="2s"`}},
		{name: "SERVICE_PORTS_JSON and SERVICE_PORTS", args: []string{"mycmd"}, env: with(awaitExample(), "SERVICE_PORTS", "[]"),
			want: []string{`K8S_AWAIT_ELECTION_SERVICE_PORTS_JSON="[{\"name\":\"my-port\",\"port\":1024}]" and SERVICE_PORTS="[]"`}},
		// Two electors at once.
		{name: "contrib's and nais/elector's flags", args: []string{"--election=a", "--id=x", "--probe-address=:4041"},
			want: []string{"--id is contrib leader-elector's and --probe-address nais/elector's"}},
		{name: "contrib's flag and an ELECTOR_ variable", args: gcrArgs, env: map[string]string{"ELECTOR_LOG_FORMAT": "json"},
			want: []string{"--ttl is contrib leader-elector's and ELECTOR_LOG_FORMAT nais/elector's"}},
		{name: "k8s-await-election and an ELECTOR_ variable", args: []string{"mycmd"}, env: with(awaitExample(), "ELECTOR_ELECTION", "a"),
			want: []string{`K8S_AWAIT_ELECTION_ENABLED="1" and ELECTOR_ELECTION="a"`}},
		{name: "k8s-await-election and flags", args: naiserator, env: awaitExample(),
			want: []string{`K8S_AWAIT_ELECTION_ENABLED="1" and the flag "--election=myapp"`, "the command to run, not flags"}},
		// Required settings.
		{name: "nais/elector without --election-namespace", env: map[string]string{"ELECTOR_ELECTION": "a"},
			want: []string{"--election-namespace is required (or ELECTOR_ELECTION_NAMESPACE)"}},
		{name: "nais/elector without --election", args: []string{"--election-namespace=ns"},
			want: []string{"--election is required (or ELECTOR_ELECTION)"}},
		{name: "contrib leader-elector without --election", args: []string{"--ttl=10s"},
			want: []string{"--election is required"}},
		{name: "contrib leader-elector with an empty --id", args: []string{"--election=a", "--id="},
			want: []string{`--id="": must not be empty`}},
		{name: "k8s-await-election without NAME", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_NAME", ""),
			want: []string{"K8S_AWAIT_ELECTION_NAME is required with K8S_AWAIT_ELECTION_ENABLED"}},
		{name: "k8s-await-election without LOCK_NAME", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_LOCK_NAME", ""),
			want: []string{"K8S_AWAIT_ELECTION_LOCK_NAME is required with K8S_AWAIT_ELECTION_ENABLED"}},
		{name: "k8s-await-election without LOCK_NAMESPACE", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_LOCK_NAMESPACE", ""),
			want: []string{"K8S_AWAIT_ELECTION_LOCK_NAMESPACE is required"}},
		{name: "k8s-await-election without IDENTITY", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_IDENTITY", ""),
			want: []string{"K8S_AWAIT_ELECTION_IDENTITY is required"}},
		{name: "k8s-await-election's SERVICE_NAME without ports", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_SERVICE_PORTS_JSON", ""),
			want: []string{"K8S_AWAIT_ELECTION_SERVICE_PORTS_JSON is required with K8S_AWAIT_ELECTION_SERVICE_NAME"}},
		{name: "k8s-await-election without a command", env: awaitExample(),
			want: []string{`K8S_AWAIT_ELECTION_ENABLED="1": the arguments must be the command to run on the leader; none is given`}},
		{name: "k8s-await-election with -- alone", args: []string{"--"}, env: awaitExample(),
			want: []string{"none is given"}},
		{name: "k8s-await-election's variables without ENABLED or command", env: with(awaitExample(), "K8S_AWAIT_ELECTION_ENABLED", ""),
			want: []string{"no command is given"}},
		{name: "our -- without a command", args: []string{"--"},
			want: []string{`"--" must be followed by the command`}},
		// Bad values, before config.Load.
		{name: "--ttl not a duration", args: []string{"--election=a", "--ttl=10"}, want: []string{`--ttl="10": must be a Go duration such as 10s`}},
		{name: "--ttl too long", args: []string{"--election=a", "--ttl=40s"},
			want: []string{`--ttl="40s": must be whole seconds from 1s to 37s`, "the renew deadline (ttl/2) 20s plus the retry period (ttl/4) (10s) must be at most 28s"}},
		{name: "--ttl fractional", args: []string{"--election=a", "--ttl=1500ms"}, want: []string{`--ttl="1500ms": must be whole seconds`}},
		{name: "--ttl zero", args: []string{"--election=a", "--ttl=0s"}, want: []string{`--ttl="0s"`, "greater than zero"}},
		{name: "--ttl negative", args: []string{"--election=a", "--ttl=-5s"}, want: []string{`--ttl="-5s"`, "greater than zero"}},
		{name: "k8s timing in Go syntax", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_LEASE_DURATION", "15s"),
			want: []string{`K8S_AWAIT_ELECTION_LEASE_DURATION="15s": must be whole seconds, such as 15`}},
		{name: "k8s timing zero", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_RENEW_DEADLINE", "0"),
			want: []string{`K8S_AWAIT_ELECTION_RENEW_DEADLINE="0": must be whole seconds from 1 to 3600`}},
		{name: "k8s timing huge", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_RETRY_PERIOD", "99999999999999999999"),
			want: []string{`K8S_AWAIT_ELECTION_RETRY_PERIOD="99999999999999999999": must be whole seconds`}},
		{name: "k8s timing signed", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_RETRY_PERIOD", "+2"),
			want: []string{`K8S_AWAIT_ELECTION_RETRY_PERIOD="+2": must be whole seconds`}},
		{name: "unknown flag", args: []string{"--election=a", "--bogus"}, want: []string{"unknown flag: --bogus"}},
		{name: "unknown shorthand", args: []string{"-x"}, want: []string{"unknown shorthand flag: 'x'"}},
		{name: "flag without its value", args: []string{"--election"}, want: []string{"flag needs an argument: --election"}},
		{name: "bool flag with a bad value", args: []string{"--election=a", "--use-cluster-credentials=maybe"},
			want: []string{`invalid argument "maybe" for "--use-cluster-credentials"`}},
		{name: "an argument after the flags", args: []string{"--election=a", "extra"}, want: []string{`unexpected argument "extra"`}},
		// Bad values, from config.Load, named as the user wrote them.
		{name: "bad --election", args: []string{"--election=My_App", "--election-namespace=ns"},
			want: []string{`--election="My_App": must be a valid object name`}},
		{name: "bad --election-namespace for contrib", args: []string{"--election=a", "--election-namespace=UPPER", "--ttl=10s"},
			want: []string{`--election-namespace="UPPER": must be a valid namespace name`}},
		{name: "bad ELECTOR_LOG_FORMAT", args: nais, env: map[string]string{"ELECTOR_LOG_FORMAT": "xml"},
			want: []string{`ELECTOR_LOG_FORMAT="xml": must be text or json`}},
		{name: "bad --log-level", args: append(slices.Clone(nais), "--log-level=verbose"),
			want: []string{`--log-level="verbose": must be debug, info, warn or error`}},
		{name: "bad --probe-address", args: append(slices.Clone(nais), "--probe-address=0.0.0.0"),
			want: []string{`--probe-address="0.0.0.0": must be host:port`}},
		{name: "bad K8S lock namespace", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_LOCK_NAMESPACE", "Bad_NS"),
			want: []string{`K8S_AWAIT_ELECTION_LOCK_NAMESPACE="Bad_NS": must be a valid namespace name`}},
		{name: "K8S lease duration below the renew deadline", args: []string{"mycmd"}, env: with(awaitExample(), "K8S_AWAIT_ELECTION_LEASE_DURATION", "5"),
			want: []string{`K8S_AWAIT_ELECTION_LEASE_DURATION="5" (as LEASE_DURATION="5s"): must be greater than RENEW_DEADLINE (10s)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr, err := Translate(tt.args, environment(tt.env))
			if err == nil {
				if tr.FrontEnd == Exec {
					t.Fatalf("Translate(%q) = exec %q, want an error", tt.args, tr.Command)
				}
				_, err = config.Load(tr.Lookup, sources(t))
				err = tr.Explain(err)
			}
			if err == nil {
				t.Fatalf("Translate(%q) and config.Load accepted it, want an error containing %q", tt.args, tt.want)
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
				t.Errorf("error has %d lines, want 1:\n%v", n, err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestTranslateHelp: -h and --help among the flags ask for the help.
func TestTranslateHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--election=a", "--help"}, {"-h"}} {
		if _, err := Translate(args, environment(nil)); !errors.Is(err, ErrHelp) {
			t.Errorf("Translate(%q) error = %v, want ErrHelp", args, err)
		}
	}
}

// TestExplainNamesWholeNames: a variable's name inside a longer one is not
// replaced, and lines not about a translated variable stay as they are.
func TestExplainNamesWholeNames(t *testing.T) {
	t.Parallel()
	tr := Translation{
		env:  map[string]string{"NAMESPACE": "x", "LEASE_DURATION": "5s"},
		from: map[string]origin{"NAMESPACE": {"--election-namespace", "x"}, "LEASE_DURATION": {"K8S_AWAIT_ELECTION_LEASE_DURATION", "5"}},
	}
	in := errors.New("POD_NAMESPACE=\"x\": a\nNAMESPACE=\"x\": b\nLEASE_DURATION=\"5s\": c\nLOG_LEVEL=\"x\": d")
	want := "POD_NAMESPACE=\"x\": a\n--election-namespace=\"x\": b\nK8S_AWAIT_ELECTION_LEASE_DURATION=\"5\" (as LEASE_DURATION=\"5s\"): c\nLOG_LEVEL=\"x\": d"
	if got := tr.Explain(in).Error(); got != want {
		t.Errorf("Explain =\n%s\nwant\n%s", got, want)
	}
	if (Translation{}).Explain(nil) != nil {
		t.Error("Explain(nil) != nil")
	}
}

// withDropInDefaults adds to want what each drop-in turns off unless the
// user set it, as its original had none of it: the status file and the
// control socket, and for contrib's leader-elector and k8s-await-election
// the health endpoints.
func withDropInDefaults(want map[string]string, fe FrontEnd) map[string]string {
	if want == nil {
		return nil
	}
	off := map[string]string{}
	switch fe {
	case GCR, AwaitElection:
		off["PROBE_ADDRESS"] = "-"
		fallthrough
	case NAIS:
		off["STATUS_FILE"], off["CONTROL_SOCKET"], off["HANDOVER_ON_DELETE"] = "-", "-", "false"
	}
	out := maps.Clone(want)
	for k, v := range off {
		if _, set := out[k]; !set {
			out[k] = v
		}
	}
	return out
}
