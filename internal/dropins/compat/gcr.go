package compat

// kubernetes/contrib's leader-elector (gcr.io/google_containers/
// leader-elector, kubernetes-retired/contrib election/example/main.go and
// election/lib/election.go), as its README starts it:
//
//	--election=example --http=0.0.0.0:4040
//
// Its flags: --election (required), --election-namespace, --id (the image's
// run.sh passes --id=$(hostname); here the default is POD_NAME when set,
// else the hostname, as for our own variables),
// --ttl (10s: the Lease duration; the renew deadline is ttl/2 and the retry
// period ttl/4, as there), --http (default off) and
// --use-cluster-credentials (in-cluster credentials instead of $KUBECONFIG).
//
// Differences, on purpose: without --election-namespace the Lease is in the
// pod's own namespace (NAMESPACE, POD_NAMESPACE, the service account's), not
// in "default" as there; the original's lock, an Endpoints annotation, cannot
// be shared with a Lease anyway, and deploy/rbac/rbac.yaml grants the pod's own
// namespace. Like the original, it serves --http alone: no health
// endpoints, no status file, no control socket, unless their variables are
// set.

import (
	"fmt"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/election"
)

// gcrTTL is the original's default --ttl.
const gcrTTL = 10 * time.Second

func gcr(g given, environ func(string) (string, bool)) (Translation, error) {
	b := newBuilder(environ)
	if v, ok := g["election"]; ok {
		b.set("LEASE_NAME", v, origin{"--election", v})
	} else if !b.given("LEASE_NAME") {
		b.fail("--election is required: the name of the election, which is the Lease's")
	}
	if v, ok := g["election-namespace"]; ok {
		b.set("NAMESPACE", v, origin{"--election-namespace", v})
	}
	if v, ok := g["id"]; ok {
		if v == "" {
			b.fail(`--id="": must not be empty; leave it out for POD_NAME, else the hostname`)
		} else {
			b.set("IDENTITY", v, origin{"--id", v})
		}
	}
	if v, ok := g["http"]; ok {
		b.set("LEADER_HTTP_ADDRESS", v, origin{"--http", v})
	}
	if v := g["use-cluster-credentials"]; v == "true" {
		// The original then ignored the kubeconfig: in-cluster it is.
		b.set("KUBECONFIG", "", origin{"--use-cluster-credentials", v})
	}
	timings := []string{"LEASE_DURATION", "RENEW_DEADLINE", "RETRY_PERIOD"}
	if v, ok := g["ttl"]; ok {
		ttl, err := time.ParseDuration(v)
		if err != nil {
			b.fail("--ttl=%q: must be a Go duration such as 10s", v)
		} else if rule := ttlRule(ttl); rule != "" {
			b.fail("--ttl=%q: %s", v, rule)
		} else {
			for i, d := range []time.Duration{ttl, ttl / 2, ttl / 4} {
				b.set(timings[i], d.String(), origin{"--ttl", v})
			}
		}
	} else if !b.given(timings[0]) && !b.given(timings[1]) && !b.given(timings[2]) {
		for i, d := range []time.Duration{gcrTTL, gcrTTL / 2, gcrTTL / 4} {
			b.setDefault(timings[i], d.String())
		}
	}
	b.takeNothingMore(true) // the original served --http alone
	return b.translation(GCR)
}

// ttlRule checks the timings --ttl gives against election.Timings' rules
// and returns them broken, on one line, or "".
func ttlRule(ttl time.Duration) string {
	err := election.Timings{LeaseDuration: ttl, RenewDeadline: ttl / 2, RetryPeriod: ttl / 4}.Validate()
	if err == nil {
		return ""
	}
	names := map[string]string{
		election.FieldLeaseDuration: "the lease duration (ttl)",
		election.FieldRenewDeadline: "the renew deadline (ttl/2)",
		election.FieldRetryPeriod:   "the retry period (ttl/4)",
	}
	name := func(f string) string { return names[f] }
	var msgs []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if te, ok := e.(*election.TimingError); ok {
			msgs = append(msgs, fmt.Sprintf("%s %s %s", name(te.Field), te.Value, te.Rule(name)))
		}
	}
	return fmt.Sprintf("must be whole seconds from 1s to %s (%s)", maxTTL(), strings.Join(msgs, "; "))
}

// maxTTL is the largest --ttl in whole seconds whose ttl/2 + ttl/4 stays
// within election.MaxStepDown.
func maxTTL() time.Duration {
	return (election.MaxStepDown * 4 / 3).Truncate(time.Second)
}
