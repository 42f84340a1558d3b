package leasestatus

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable writes the report for a person: one row of the Lease's state,
// then one line per problem, or one line saying that all agrees.
func (r Report) WriteTable(w io.Writer) error {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LEASE\tHOLDER\tHELD FOR\tTRANSITIONS\tRENEW AGE\tEXPIRES IN\tLABELLED "+strings.ToUpper(r.LabelKey+"="+roleLeader))
	transitions := "-"
	if r.Found {
		transitions = strconv.Itoa(int(r.Transitions))
	}
	labelled := "-" // no pod carries the label
	if len(r.Pods) > 0 {
		labelled = cmp.Or(strings.Join(r.LabelledLeader, ","), "none")
	}
	fmt.Fprintf(tw, "%s/%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Namespace, r.Lease, cmp.Or(r.Holder, "-"),
		seconds(r.HeldFor), transitions, seconds(r.RenewAge), seconds(r.ExpiresIn), labelled)
	_ = tw.Flush() // into a buffer: no error
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "PROBLEM: %s\n", p)
	}
	if len(r.Problems) == 0 {
		labels := fmt.Sprintf("and only it is labelled %s=%s", r.LabelKey, roleLeader)
		if len(r.Pods) == 0 {
			labels = fmt.Sprintf("(no pod carries the %s label)", r.LabelKey)
		}
		fmt.Fprintf(&b, "OK: %s leads, its Lease is live %s\n", r.Holder, labels)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// WriteJSON writes the report for a script.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func seconds(s *Seconds) string {
	if s == nil {
		return "-"
	}
	return human(time.Duration(*s))
}
