// Package config reads the sidecar's configuration from environment variables
// (the original project's names, plus a few) and validates all of it at once,
// so a user sees every problem in one run.
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/leader-elector/leader-elector/election"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is the sidecar's configuration. The desc tags are the help text.
type Config struct {
	LeaseName     string        `envconfig:"LEASE_NAME" required:"true" desc:"name of the coordination.k8s.io/v1 Lease the replicas compete for"`
	Namespace     string        `envconfig:"NAMESPACE" desc:"namespace of the Lease and the pod; else POD_NAMESPACE, else the service account's namespace file"`
	PodNamespace  string        `envconfig:"POD_NAMESPACE" desc:"fallback for NAMESPACE, from the Downward API"`
	Identity      string        `envconfig:"IDENTITY" desc:"holder identity written to the Lease and the status file; default: the hostname (the pod name)"`
	StatusFile    string        `envconfig:"STATUS_FILE" desc:"file the leader writes its identity to; if it is an existing directory, the file is leader_status inside it (default /tmp/leader_status)"`
	StatusDir     string        `envconfig:"STATUS_DIR" desc:"the original project's name for STATUS_FILE"`
	HealthPort    int           `envconfig:"HEALTH_PORT" default:"8080" desc:"port of /healthz, /livez, /readyz and /status"`
	LabelPodRole  bool          `envconfig:"LABEL_POD_ROLE" default:"false" desc:"label the own pod role=leader or role=follower (needs POD_NAME)"`
	PodName       string        `envconfig:"POD_NAME" desc:"own pod name, from the Downward API; required with LABEL_POD_ROLE"`
	PodIP         string        `envconfig:"POD_IP" desc:"own pod IP, from the Downward API; shown in /status"`
	RoleLabelKey  string        `envconfig:"ROLE_LABEL_KEY" default:"role" desc:"key of the role label"`
	PeerSelector  string        `envconfig:"PEER_SELECTOR" desc:"label selector of the pods sharing the Lease, for stale-label repair; default: the own pod's app.kubernetes.io/name or app label"`
	LeaseDuration time.Duration `envconfig:"LEASE_DURATION" default:"15s" desc:"how long followers wait before taking a Lease that was not released (whole seconds)"`
	RenewDeadline time.Duration `envconfig:"RENEW_DEADLINE" default:"10s" desc:"how long the leader leads without a successful renew"`
	RetryPeriod   time.Duration `envconfig:"RETRY_PERIOD" default:"2s" desc:"how often the leader renews"`
	Kubeconfig    string        `envconfig:"KUBECONFIG" desc:"kubeconfig to use outside a cluster; empty: in-cluster config"`
	LogLevel      string        `envconfig:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat     string        `envconfig:"LOG_FORMAT" default:"text" desc:"text or json"`
}

// Sources are where defaults come from besides the environment.
type Sources struct {
	// Hostname returns the default identity.
	Hostname func() (string, error)
	// NamespaceFile holds the in-cluster namespace.
	NamespaceFile string
}

// DefaultSources are the real ones.
var DefaultSources = Sources{
	Hostname:      os.Hostname,
	NamespaceFile: "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
}

// Load reads the environment, fills in defaults and validates. The error
// lists every problem, one per line, each naming the variable, its value
// and the rule.
func Load(src Sources) (Config, error) {
	var c Config
	var errs []error
	failed := map[string]bool{} // variables that did not parse: no further rules for them
	// envconfig stops at the first bad variable; process one field at a time
	// to report them all.
	v := reflect.ValueOf(&c).Elem()
	for i := range v.NumField() {
		f := v.Type().Field(i)
		one := reflect.New(reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}}))
		if err := envconfig.Process("", one.Interface()); err != nil {
			errs = append(errs, explain(f, err))
			failed[f.Tag.Get("envconfig")] = true
			continue
		}
		v.Field(i).Set(one.Elem().Field(0))
	}
	for _, err := range c.resolve(src) {
		var v *varError
		if !errors.As(err, &v) || !failed[v.key] {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

// explain turns an envconfig error into one line: variable, value, rule.
func explain(f reflect.StructField, err error) error {
	key := f.Tag.Get("envconfig")
	var perr *envconfig.ParseError
	if errors.As(err, &perr) {
		rule := map[reflect.Type]string{
			reflect.TypeFor[time.Duration](): "must be a Go duration such as 15s or 500ms",
			reflect.TypeFor[int]():           "must be a whole number",
			reflect.TypeFor[bool]():          "must be true or false",
		}[f.Type]
		return fmt.Errorf("%s=%q: %s", key, perr.Value, rule)
	}
	if strings.Contains(err.Error(), "required key") {
		return fmt.Errorf("%s is required: %s", key, f.Tag.Get("desc"))
	}
	return fmt.Errorf("%s: %w", key, err)
}

// resolve fills in derived defaults and checks every rule.
func (c *Config) resolve(src Sources) []error {
	var errs []error
	// bad reports a broken rule with the value as the user wrote it (a
	// duration of 15500ms stays 15500ms), or as it was derived.
	bad := func(key string, value any, rule string) {
		v, ok := os.LookupEnv(key)
		if !ok {
			v = fmt.Sprint(value)
		}
		errs = append(errs, &varError{key: key, msg: fmt.Sprintf("%s=%q: %s", key, v, rule)})
	}
	// badAll reports several messages of one validator on one line.
	badAll := func(key string, value any, rule string, msgs []string) {
		if len(msgs) > 0 {
			bad(key, value, rule+": "+strings.Join(msgs, "; "))
		}
	}
	// envconfig's required only catches an unset variable; LEASE_NAME="" (as
	// from an empty value in a manifest) must fail too. When LEASE_NAME is
	// unset, this error is dropped in favour of envconfig's "is required".
	if c.LeaseName == "" {
		bad("LEASE_NAME", c.LeaseName, "must not be empty: set the name of the Lease")
	} else {
		badAll("LEASE_NAME", c.LeaseName, "must be a valid object name", validation.IsDNS1123Subdomain(c.LeaseName))
	}

	nsFrom := "NAMESPACE" // where the namespace came from, for the error; "" for the file
	switch {
	case c.Namespace != "":
	case c.PodNamespace != "":
		c.Namespace, nsFrom = c.PodNamespace, "POD_NAMESPACE"
	default:
		b, err := os.ReadFile(src.NamespaceFile)
		switch ns := strings.TrimSpace(string(b)); {
		case err != nil:
			errs = append(errs, fmt.Errorf("NAMESPACE is not set, nor POD_NAMESPACE, and the in-cluster namespace file cannot be read (%v): set NAMESPACE", err))
		case ns == "":
			errs = append(errs, fmt.Errorf("NAMESPACE is not set, nor POD_NAMESPACE, and the in-cluster namespace file %s is empty: set NAMESPACE", src.NamespaceFile))
		default:
			c.Namespace, nsFrom = ns, ""
		}
	}
	if c.Namespace != "" {
		msgs := validation.IsDNS1123Label(c.Namespace)
		if nsFrom != "" {
			badAll(nsFrom, c.Namespace, "must be a valid namespace name", msgs)
		} else if len(msgs) > 0 {
			errs = append(errs, fmt.Errorf("namespace %q from %s: must be a valid namespace name: %s", c.Namespace, src.NamespaceFile, strings.Join(msgs, "; ")))
		}
	}

	if c.Identity == "" {
		hostname := src.Hostname
		if hostname == nil {
			hostname = os.Hostname
		}
		h, err := hostname()
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("IDENTITY is not set and the hostname cannot be read (%v): set IDENTITY", err))
		case h == "":
			errs = append(errs, errors.New("IDENTITY is not set and the hostname is empty: set IDENTITY"))
		}
		c.Identity = h
	}

	if c.StatusFile != "" && c.StatusDir != "" && c.StatusFile != c.StatusDir {
		errs = append(errs, fmt.Errorf("STATUS_FILE=%q and STATUS_DIR=%q: set only one; they name the same setting", c.StatusFile, c.StatusDir))
	}

	if c.HealthPort < 1 || c.HealthPort > 65535 {
		bad("HEALTH_PORT", c.HealthPort, "must be a port number from 1 to 65535")
	}

	if c.LabelPodRole && c.PodName == "" {
		errs = append(errs, errors.New("POD_NAME is required when LABEL_POD_ROLE=true: set it from the Downward API (fieldRef metadata.name)"))
	}
	badAll("ROLE_LABEL_KEY", c.RoleLabelKey, "must be a valid label key", validation.IsQualifiedName(c.RoleLabelKey))
	if c.PeerSelector != "" {
		if s, err := labels.Parse(c.PeerSelector); err != nil {
			bad("PEER_SELECTOR", c.PeerSelector, "must be a label selector such as app=myapp: "+err.Error())
		} else if s.Empty() {
			bad("PEER_SELECTOR", c.PeerSelector, "must select something, such as app=myapp")
		}
	}

	timings := election.Timings{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
	if err := timings.Validate(); err != nil {
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var te *election.TimingError
			if errors.As(e, &te) {
				bad(timingVars[te.Field], te.Value, te.Rule(func(f string) string { return timingVars[f] }))
			}
		}
	}

	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("LOG_LEVEL", c.LogLevel, "must be debug, info, warn or error")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		bad("LOG_FORMAT", c.LogFormat, "must be text or json")
	}
	return errs
}

// timingVars names election.Timings' fields as variables.
var timingVars = map[string]string{
	election.FieldLeaseDuration: "LEASE_DURATION",
	election.FieldRenewDeadline: "RENEW_DEADLINE",
	election.FieldRetryPeriod:   "RETRY_PERIOD",
}

// varError is a rule broken by one variable's value.
type varError struct{ key, msg string }

func (e *varError) Error() string { return e.msg }

// Usage writes every variable with its default and meaning.
func Usage(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING")
	for _, v := range Variables() {
		def := v.Default
		if v.Required {
			def = "(required)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, v.Description)
	}
	return tw.Flush()
}

// Variable describes one environment variable.
type Variable struct {
	Name, Default, Description string
	Required                   bool
}

// Variables lists the variables Config reads, in order.
func Variables() []Variable {
	t := reflect.TypeFor[Config]()
	out := make([]Variable, 0, t.NumField())
	for i := range t.NumField() {
		tag := t.Field(i).Tag
		out = append(out, Variable{
			Name:        tag.Get("envconfig"),
			Default:     tag.Get("default"),
			Description: tag.Get("desc"),
			Required:    tag.Get("required") == "true",
		})
	}
	return out
}
