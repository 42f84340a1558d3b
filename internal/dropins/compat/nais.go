package compat

// nais/elector (github.com/nais/elector, cmd/elector/main.go), as naiserator
// starts it:
//
//	--election=<app> --election-namespace=<ns> --http=localhost:4040 --probe-address=0.0.0.0:4041
//	ELECTOR_LOG_FORMAT=json
//
// Every flag is also read from ELECTOR_<FLAG> (viper's AutomaticEnv with the
// prefix elector, - as _); an empty variable counts as unset, as there
// (viper's AllowEmptyEnv is off). --election and --election-namespace are
// required. The defaults are the code's (not its README's): --http
// 0.0.0.0:27070, --probe-address 0.0.0.0:28080, --metrics-address
// 0.0.0.0:29090. The identity is the hostname there; here it is POD_NAME
// when set, else the hostname (the same in a pod without hostNetwork).
// nais/elector has no timings (its Lease has no duration: a leader leads
// until its pod is deleted), so ours apply: LEASE_DURATION 15s,
// RENEW_DEADLINE 10s, RETRY_PERIOD 2s.

// naisFlag is a flag of nais/elector and our variable for it.
type naisFlag struct {
	flag, env, ours, def string
	// translate maps a value to ours; nil keeps it.
	translate func(string) string
}

var naisFlags = []naisFlag{
	{flag: "election", env: "ELECTOR_ELECTION", ours: "LEASE_NAME"},
	{flag: "election-namespace", env: "ELECTOR_ELECTION_NAMESPACE", ours: "NAMESPACE"},
	{flag: "http", env: "ELECTOR_HTTP", ours: "LEADER_HTTP_ADDRESS", def: "0.0.0.0:27070"},
	{flag: "probe-address", env: "ELECTOR_PROBE_ADDRESS", ours: "PROBE_ADDRESS", def: "0.0.0.0:28080"},
	{flag: "metrics-address", env: "ELECTOR_METRICS_ADDRESS", ours: "METRICS_ADDRESS", def: "0.0.0.0:29090"},
	{flag: "log-format", env: "ELECTOR_LOG_FORMAT", ours: "LOG_FORMAT"},
	{flag: "log-level", env: "ELECTOR_LOG_LEVEL", ours: "LOG_LEVEL", translate: logrusLevel},
}

// naisEnvSet returns the first ELECTOR_* variable of a flag that is set
// non-empty, or "". ELECTOR_PATH, ELECTOR_GET_URL and ELECTOR_SSE_URL are
// not among them: naiserator gives those to the app, not to the elector.
func naisEnvSet(environ func(string) (string, bool)) string {
	for _, f := range naisFlags {
		if nonEmpty(environ, f.env) != "" {
			return f.env
		}
	}
	return ""
}

// logrusLevel maps logrus's level names, which nais/elector takes, to ours.
func logrusLevel(v string) string {
	switch v {
	case "trace":
		return "debug"
	case "warning":
		return "warn"
	case "fatal", "panic":
		return "error"
	}
	return v
}

func nais(g given, environ func(string) (string, bool)) (Translation, error) {
	b := newBuilder(environ)
	for _, f := range naisFlags {
		tr := f.translate
		if tr == nil {
			tr = func(v string) string { return v }
		}
		if v, ok := g[f.flag]; ok {
			b.set(f.ours, tr(v), origin{"--" + f.flag, v})
		}
		if v := nonEmpty(environ, f.env); v != "" {
			b.set(f.ours, tr(v), origin{f.env, v})
		}
	}
	for _, req := range []struct{ flag, env, ours, what string }{
		{"--election", "ELECTOR_ELECTION", "LEASE_NAME", "the name of the election, which is the Lease's"},
		{"--election-namespace", "ELECTOR_ELECTION_NAMESPACE", "NAMESPACE", "the namespace of the election"},
	} {
		if !b.given(req.ours) {
			b.fail("%s is required (or %s): %s", req.flag, req.env, req.what)
		}
	}
	for _, f := range naisFlags {
		if f.def == "" {
			continue
		}
		if f.ours == "PROBE_ADDRESS" {
			b.setDefault(f.ours, f.def, "HEALTH_PORT")
		} else {
			b.setDefault(f.ours, f.def)
		}
	}
	b.takeNothingMore(false) // its ports are the original's, set above
	return b.translation(NAIS)
}
