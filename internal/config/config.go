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
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/status"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Config is the sidecar's configuration. The env tags name the variables
// (",required": must be set, if perhaps empty), the default tags hold the
// defaults and the desc tags the help text.
type Config struct {
	LeaseName        string        `env:"LEASE_NAME,required" desc:"name of the coordination.k8s.io/v1 Lease the replicas compete for"`
	Namespace        string        `env:"NAMESPACE" desc:"namespace of the Lease and the pod; else POD_NAMESPACE, else the service account's namespace file"`
	PodNamespace     string        `env:"POD_NAMESPACE" desc:"fallback for NAMESPACE, from the Downward API"`
	Identity         string        `env:"IDENTITY" desc:"holder identity written to the Lease and the status file; default: POD_NAME, else the hostname (in a pod without hostNetwork both are the pod name)"`
	StatusFile       string        `env:"STATUS_FILE" desc:"file the leader writes its identity to (a symbolic link is refused); if it is an existing directory, the file is leader_status inside it; \"-\": no file (the drop-in modes' default)"`
	StatusDir        string        `env:"STATUS_DIR" desc:"the original project's name for STATUS_FILE"`
	HealthPort       int           `env:"HEALTH_PORT" default:"8080" desc:"port of /healthz, /livez, /readyz, /status and, unless METRICS_ADDRESS is set, /metrics (decimal)"`
	ProbeAddress     string        `env:"PROBE_ADDRESS" desc:"host:port of those endpoints instead of :HEALTH_PORT, such as 0.0.0.0:4041 or 127.0.0.1:8080 (nais/elector's --probe-address); \"-\": not served (the default of the drop-ins of k8s-await-election and contrib's leader-elector)"`
	LabelPodRole     bool          `env:"LABEL_POD_ROLE" default:"false" desc:"label the own pod role=leader or role=follower (needs POD_NAME)"`
	PodName          string        `env:"POD_NAME" desc:"own pod name, from the Downward API (fieldRef metadata.name); the default IDENTITY when set and not empty; required with LABEL_POD_ROLE"`
	PodIP            string        `env:"POD_IP" desc:"own pod IP, from the Downward API (an IP address); shown in /status; with HEALTH_PORT where the leader sends this replica its take-over offer when it hands over to it; required with SERVICE_NAME (the Service's endpoint, and its IP family the EndpointSlice's addressType)"`
	RoleLabelKey     string        `env:"ROLE_LABEL_KEY" default:"role" desc:"key of the role label"`
	PeerSelector     string        `env:"PEER_SELECTOR" desc:"label selector of the pods sharing the Lease, whose role labels the leader keeps right; default: the own pod's app.kubernetes.io/name (else app), app.kubernetes.io/instance and app.kubernetes.io/component labels, those it has"`
	HandoverOnDelete bool          `env:"HANDOVER_ON_DELETE" default:"true" desc:"while leading, watch the pods (the own pod and its peers, see PEER_SELECTOR) and, once the own pod is being deleted, hand the Lease at once to a Ready peer that is not being deleted, of the newest revision, before the kubelet stops anything (needs POD_NAME and get, list and watch on pods; the drop-in modes' default is false); false: the Lease is handed over on SIGTERM"`
	LeaseDuration    time.Duration `env:"LEASE_DURATION" default:"15s" desc:"how long followers wait before taking a Lease that was not released (whole seconds)"`
	RenewDeadline    time.Duration `env:"RENEW_DEADLINE" default:"10s" desc:"how long the leader leads without a successful renew; with RETRY_PERIOD at most 28s, the longest a step-down takes"`
	RetryPeriod      time.Duration `env:"RETRY_PERIOD" default:"2s" desc:"how often the leader renews"`
	Kubeconfig       string        `env:"KUBECONFIG" desc:"kubeconfig to use outside a cluster; empty: in-cluster config"`
	LogLevel         string        `env:"LOG_LEVEL" default:"info" desc:"debug, info, warn or error"`
	LogFormat        string        `env:"LOG_FORMAT" default:"text" desc:"text or json"`

	LeaderHTTPAddress string `env:"LEADER_HTTP_ADDRESS" desc:"host:port of the NAIS elector's leader API (JSON on any path, Server-Sent Events on /sse), which gcr leader-elector clients read too; empty: off. GET /leader is on the health listener too, with its long-poll and GET /watch when HEALTH_STREAMS=true"`
	HealthStreams     bool   `env:"HEALTH_STREAMS" default:"false" desc:"serve the event stream GET /watch and the long-poll GET /leader?wait= on the health listener, to anyone who reaches it (each open one costs about 31 KB, at most 256 at once, 16 per client address); false: both answer 403, and GET /leader answers at once"`
	// StatusEndpoint and CommandStopGrace: k8s-await-election's mode (see
	// the gatekeeper and renewstatus packages).
	StatusEndpoint   string        `env:"STATUS_ENDPOINT" desc:"host:port of the k8s-await-election status endpoint: any path answers 200, or 500 while this replica leads but has not renewed for LEASE_DURATION plus 2s; empty: off"`
	CommandStopGrace time.Duration `env:"COMMAND_STOP_GRACE" default:"10s" desc:"how long the command (the arguments after --) may take to exit after SIGTERM before it is killed; at most RETRY_PERIOD once leadership was lost"`
	// Command is run only while this replica leads: the arguments after
	// "--". It is no variable.
	Command []string
	// The EndpointSlice writer (package serviceslice).
	ServiceName      string `env:"SERVICE_NAME" desc:"selector-less Service the leader points at itself with an EndpointSlice of its own; empty: off"`
	ServiceNamespace string `env:"SERVICE_NAMESPACE" desc:"namespace of SERVICE_NAME; default: the Lease's namespace"`
	ServicePorts     string `env:"SERVICE_PORTS" desc:"the endpoint's ports with SERVICE_NAME, as a JSON list of {name, port, protocol, appProtocol} (core/v1 EndpointPort), such as [{\"name\":\"http\",\"port\":8080}]; required with SERVICE_NAME"`
	// Ports are SERVICE_PORTS as Load parsed them. They are no variable.
	Ports []discoveryv1.EndpointPort
	// Peers is PEER_SELECTOR as Load parsed it; nil when it is empty. It
	// is no variable.
	Peers       labels.Selector
	NodeName    string `env:"NODE_NAME" desc:"own node name, from the Downward API (fieldRef spec.nodeName); the endpoint's nodeName"`
	MetricsAddr string `env:"METRICS_ADDRESS" desc:"host:port of a listener of its own for /metrics, such as :9090; empty: /metrics is on HEALTH_PORT"`
	PodUID      string `env:"POD_UID" desc:"own pod uid, from the Downward API (metadata.uid); written beside the holder in the Lease, so that a restarted sidecar resumes its own term at once and two pods sharing one identity never both lead; names the pod in its Events"`
	Events      bool   `env:"EVENTS" default:"true" desc:"record Kubernetes Events (events.k8s.io/v1) regarding the Lease when this pod becomes leader and stops leading, and regarding a pod whose role label the leader repaired"`

	AppHealth // APP_HEALTH_*, in apphealth.go
	Control   // CONTROL_SOCKET, in control.go
}

// descSuffix completes help text that comes from other packages, so that
// each such fact is written once.
var descSuffix = map[string]string{
	"STATUS_FILE": " (default " + status.DefaultPath + ")",
}

// Sources are where defaults come from besides the environment.
type Sources struct {
	// Hostname returns the identity when neither IDENTITY nor POD_NAME is
	// set.
	Hostname func() (string, error)
	// NamespaceFile holds the in-cluster namespace.
	NamespaceFile string
}

// DefaultSources are the real ones.
var DefaultSources = Sources{
	Hostname:      os.Hostname,
	NamespaceFile: "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
}

// Load reads the variables through lookup, which is like os.LookupEnv, fills
// in defaults and validates. The error lists every problem, one per line,
// each naming the variable, its value and the rule.
func Load(lookup func(string) (string, bool), src Sources) (Config, error) {
	var errs []error
	failed := map[string]bool{} // variables that did not parse: no further rules for them
	// The library sees only the variables Config declares, with our
	// defaults applied to the unset ones. Its own default handling is not
	// used: it would replace a variable set empty by the default, where an
	// empty HEALTH_PORT must be reported.
	environ := map[string]string{}
	for _, v := range variables() {
		val, ok := lookup(v.Name)
		switch {
		case !ok && v.Default != "":
			val, ok = v.Default, true
		case ok && val == "" && v.kind != reflect.String:
			// The library skips empty values, leaving a zero port or duration.
			errs = append(errs, fmt.Errorf("%s=%q: %s", v.Name, val, parseRule[v.kind]))
			failed[v.Name] = true
			continue
		}
		if ok {
			environ[v.Name] = val
		}
	}
	var c Config
	err := env.ParseWithOptions(&c, env.Options{
		Environment: environ,
		FuncMap:     map[reflect.Type]env.ParserFunc{reflect.TypeFor[int](): parseDecimal},
	})
	var agg env.AggregateError
	if errors.As(err, &agg) {
		for _, e := range agg.Errors {
			key, line := explain(e, environ)
			failed[key] = true
			errs = append(errs, line)
		}
	} else if err != nil {
		errs = append(errs, err)
	}
	for _, err := range c.resolve(lookup, src) {
		var v *varError
		if !errors.As(err, &v) || !failed[v.key] {
			errs = append(errs, err)
		}
	}
	return c, errors.Join(errs...)
}

// parseDecimal reads a whole number in base 10 only: a HEALTH_PORT of 010 is
// ten, not eight, and 0x1f90 is an error.
func parseDecimal(s string) (any, error) {
	return strconv.Atoi(s)
}

// parseRule is the rule a variable of a kind breaks when it does not parse.
var parseRule = map[reflect.Kind]string{
	reflect.Int64: "must be a Go duration such as 15s or 500ms", // time.Duration
	reflect.Int:   "must be a whole number, in decimal",
	reflect.Bool:  "must be true or false",
}

// explain turns one of the library's errors into one line: variable, value,
// rule. It also returns the variable.
func explain(err error, environ map[string]string) (string, error) {
	var perr env.ParseError
	var unset env.VarIsNotSetError
	switch {
	case errors.As(err, &perr):
		for _, v := range variables() {
			if v.field == perr.Name {
				rule := parseRule[v.kind]
				if errors.Is(perr.Err, strconv.ErrRange) {
					rule = "is out of range"
				}
				return v.Name, fmt.Errorf("%s=%q: %s", v.Name, environ[v.Name], rule)
			}
		}
	case errors.As(err, &unset):
		for _, v := range variables() {
			if v.Name == unset.Key {
				return v.Name, fmt.Errorf("%s is required: %s", v.Name, v.Description)
			}
		}
	}
	return "", err
}

// resolve derives the defaults that depend on other variables and the
// environment, and checks every rule, all at once: one error a broken rule.
func (c *Config) resolve(lookup func(string) (string, bool), src Sources) []error {
	p := &problems{lookup: lookup}
	c.resolveLease(p, src)
	c.resolveIdentity(p, src)
	c.resolveStatusFile(p)
	c.resolveListeners(p)
	c.resolveLabels(p)
	c.resolveService(p)
	c.resolveAppHealth(p)
	c.resolveControl(p)
	c.resolveTimings(p)
	c.resolveLogging(p)
	return p.errs
}

// resolveLease checks LEASE_NAME and finds the namespace: NAMESPACE, else
// POD_NAMESPACE, else the in-cluster namespace file.
func (c *Config) resolveLease(p *problems, src Sources) {
	// required only catches an unset variable; LEASE_NAME="" (as from an
	// empty value in a manifest) must fail too. When LEASE_NAME is unset,
	// this error is dropped in favour of "is required".
	if c.LeaseName == "" {
		p.bad("LEASE_NAME", c.LeaseName, "must not be empty: set the name of the Lease")
	} else {
		p.badAll("LEASE_NAME", c.LeaseName, "must be a valid object name", validation.IsDNS1123Subdomain(c.LeaseName))
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
			p.add(fmt.Errorf("NAMESPACE is not set, nor POD_NAMESPACE, and the in-cluster namespace file cannot be read (%v): set NAMESPACE", err))
		case ns == "":
			p.add(fmt.Errorf("NAMESPACE is not set, nor POD_NAMESPACE, and the in-cluster namespace file %s is empty: set NAMESPACE", src.NamespaceFile))
		default:
			c.Namespace, nsFrom = ns, ""
		}
	}
	if c.Namespace == "" {
		return
	}
	msgs := validation.IsDNS1123Label(c.Namespace)
	if nsFrom != "" {
		p.badAll(nsFrom, c.Namespace, "must be a valid namespace name", msgs)
	} else if len(msgs) > 0 {
		p.add(fmt.Errorf("namespace %q from %s: must be a valid namespace name: %s", c.Namespace, src.NamespaceFile, strings.Join(msgs, "; ")))
	}
}

// resolveIdentity finds the identity: IDENTITY, else POD_NAME, else the
// hostname. A pod's name is unique among its peers; its hostname is not: a
// hostNetwork pod has its node's, and two replicas on one node would share
// it.
func (c *Config) resolveIdentity(p *problems, src Sources) {
	switch {
	case c.Identity != "":
	case c.PodName != "":
		c.Identity = c.PodName
	default:
		hostname := src.Hostname
		if hostname == nil {
			hostname = os.Hostname
		}
		h, err := hostname()
		switch {
		case err != nil:
			p.add(fmt.Errorf("IDENTITY is not set, nor POD_NAME, and the hostname cannot be read (%v): set IDENTITY, or POD_NAME from the Downward API (fieldRef metadata.name)", err))
		case h == "":
			p.add(errors.New("IDENTITY is not set, nor POD_NAME, and the hostname is empty: set IDENTITY, or POD_NAME from the Downward API (fieldRef metadata.name)"))
		}
		c.Identity = h
	}
}

// resolveStatusFile checks STATUS_FILE or STATUS_DIR, now rather than when
// the sidecar starts (a symbolic link, say).
func (c *Config) resolveStatusFile(p *problems) {
	if c.StatusFile != "" && c.StatusDir != "" && c.StatusFile != c.StatusDir {
		p.add(fmt.Errorf("STATUS_FILE=%q and STATUS_DIR=%q: set only one; they name the same setting", c.StatusFile, c.StatusDir))
		return
	}
	if _, err := status.Resolve(c.StatusFile, c.StatusDir); err != nil {
		key, value := "STATUS_FILE", c.StatusFile
		switch {
		case value == "" && c.StatusDir != "":
			key, value = "STATUS_DIR", c.StatusDir
		case value == "":
			value = status.DefaultPath
		}
		p.bad(key, value, err.Error())
	}
}

// resolveListeners checks the ports and listen addresses.
func (c *Config) resolveListeners(p *problems) {
	if c.HealthPort < 1 || c.HealthPort > 65535 {
		p.bad("HEALTH_PORT", c.HealthPort, "must be a port number from 1 to 65535")
	}
	if c.ProbeAddress != "" && c.ProbeAddress != Off {
		if rule := addressRule(c.ProbeAddress); rule != "" {
			p.bad("PROBE_ADDRESS", c.ProbeAddress, rule)
		} else if hp, set := p.lookup("HEALTH_PORT"); set && !samePort(c.ProbeAddress, c.HealthPort) {
			p.add(&varError{key: "HEALTH_PORT", msg: fmt.Sprintf(
				"PROBE_ADDRESS=%q and HEALTH_PORT=%q: set only one; both say where the health endpoints listen",
				c.ProbeAddress, hp)})
		}
	}
	for name, addr := range c.listenAddresses() {
		if rule := addressRule(addr); addr != "" && rule != "" {
			p.bad(name, addr, rule)
		}
	}
}

// resolveLabels checks the role label's variables.
func (c *Config) resolveLabels(p *problems) {
	if c.LabelPodRole && c.PodName == "" {
		p.add(errors.New("POD_NAME is required when LABEL_POD_ROLE=true: set it from the Downward API (fieldRef metadata.name)"))
	}
	p.badAll("ROLE_LABEL_KEY", c.RoleLabelKey, "must be a valid label key", validation.IsQualifiedName(c.RoleLabelKey))
	if c.PeerSelector != "" {
		switch s, err := labels.Parse(c.PeerSelector); {
		case err != nil:
			p.bad("PEER_SELECTOR", c.PeerSelector, "must be a label selector such as app=myapp: "+err.Error())
		case s.Empty():
			p.bad("PEER_SELECTOR", c.PeerSelector, "must select something, such as app=myapp")
		default:
			c.Peers = s
		}
	}
}

// resolveTimings checks the election's timings (election.Timings' rules)
// and COMMAND_STOP_GRACE.
func (c *Config) resolveTimings(p *problems) {
	timings := election.Timings{LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod}
	if err := timings.Validate(); err != nil {
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			var te *election.TimingError
			if errors.As(e, &te) {
				p.bad(timingVars[te.Field], te.Value, te.Rule(func(f string) string { return timingVars[f] }))
			}
		}
	}
	if c.CommandStopGrace <= 0 || c.CommandStopGrace > maxStopGrace {
		p.bad("COMMAND_STOP_GRACE", c.CommandStopGrace, "must be greater than zero and at most "+maxStopGrace.String())
	}
}

// resolveLogging checks LOG_LEVEL and LOG_FORMAT.
func (c *Config) resolveLogging(p *problems) {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		p.bad("LOG_LEVEL", c.LogLevel, "must be debug, info, warn or error")
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		p.bad("LOG_FORMAT", c.LogFormat, "must be text or json")
	}
}

// problems collects the broken rules of a configuration, all at once.
type problems struct {
	lookup func(string) (string, bool)
	errs   []error
}

func (p *problems) add(err error) { p.errs = append(p.errs, err) }

// bad reports a broken rule of key with the value as the user wrote it (a
// duration of 15500ms stays 15500ms), or as it was derived.
func (p *problems) bad(key string, value any, rule string) {
	v, ok := p.lookup(key)
	if !ok {
		v = fmt.Sprint(value)
	}
	p.add(&varError{key: key, msg: fmt.Sprintf("%s=%q: %s", key, v, rule)})
}

// badAll reports the messages of one validator on one line, if any.
func (p *problems) badAll(key string, value any, rule string, msgs []string) {
	if len(msgs) > 0 {
		p.bad(key, value, rule+": "+strings.Join(msgs, "; "))
	}
}

// listenAddresses are the optional listen addresses other than
// PROBE_ADDRESS, by variable; each follows addressRule.
func (c Config) listenAddresses() map[string]string {
	return map[string]string{"LEADER_HTTP_ADDRESS": c.LeaderHTTPAddress, "STATUS_ENDPOINT": c.StatusEndpoint, "METRICS_ADDRESS": c.MetricsAddr}
}

// Off, as PROBE_ADDRESS or STATUS_FILE, turns the health endpoints or the
// status file off.
const Off = "-"

// HealthAddress is where the health endpoints listen: PROBE_ADDRESS, else
// :HEALTH_PORT on every address; "" when PROBE_ADDRESS is Off.
func (c Config) HealthAddress() string {
	if c.ProbeAddress == Off {
		return ""
	}
	if c.ProbeAddress != "" {
		return c.ProbeAddress
	}
	return ":" + strconv.Itoa(c.HealthPort)
}

// maxStopGrace bounds COMMAND_STOP_GRACE: a larger one is a typo, and a
// pod's terminationGracePeriodSeconds would cut it short anyway.
const maxStopGrace = time.Hour

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
	vs := variables()
	out := make([]Variable, len(vs))
	for i, v := range vs {
		out[i] = v.Variable
	}
	return out
}

// variable is a Variable with what Load needs to parse it.
type variable struct {
	Variable
	field string       // the Config field
	kind  reflect.Kind // of the field
}

func variables() []variable {
	return appendVariables(nil, reflect.TypeFor[Config]())
}

// appendVariables appends the variables of struct type t, those of an
// embedded struct (such as AppHealth) in its place.
func appendVariables(out []variable, t reflect.Type) []variable {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			out = appendVariables(out, f.Type)
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("env"), ",")
		if name == "" {
			continue // not from the environment, such as Command
		}
		out = append(out, variable{
			Variable: Variable{
				Name:        name,
				Default:     f.Tag.Get("default"),
				Description: f.Tag.Get("desc") + descSuffix[name],
				Required:    opts == "required",
			},
			field: f.Name,
			kind:  f.Type.Kind(),
		})
	}
	return out
}
