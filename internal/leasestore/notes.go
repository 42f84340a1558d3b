package leasestore

import (
	"maps"

	"github.com/leader-elector/leader-elector/election"
)

// The annotations that hold election.Notes. client-go's electors neither
// read nor write annotations, and an update keeps every other one.
const (
	AnnotationHolderUID = "leader-elector.io/holder-uid"
	// AnnotationHolderKey is the holder's public key (ed25519, base64),
	// against which its standby checks a take-over offer.
	AnnotationHolderKey = "leader-elector.io/holder-key"
	AnnotationStandby   = "leader-elector.io/standby"
	// AnnotationStandbyAddress is where the standby takes a take-over
	// offer: its POD_IP:HEALTH_PORT, written and cleared with
	// AnnotationStandby.
	AnnotationStandbyAddress = "leader-elector.io/standby-address"
)

// retiredAnnotations are the notes of earlier versions of this elector (a
// release naming a successor, a grant and its refusal), which the take-over
// replaced: every update removes them, so none outlives an upgrade.
var retiredAnnotations = []string{"leader-elector.io/successor", "leader-elector.io/granted-by", "leader-elector.io/refused"}

// notesFrom reads the notes from a Lease's annotations.
func notesFrom(annotations map[string]string) election.Notes {
	return election.Notes{
		HolderUID:      annotations[AnnotationHolderUID],
		HolderKey:      annotations[AnnotationHolderKey],
		Standby:        annotations[AnnotationStandby],
		StandbyAddress: annotations[AnnotationStandbyAddress],
	}
}

// withNotes returns annotations with the notes' keys set to n (an empty
// field removes its key) and every other key kept. It never modifies the
// map it is given; the result is nil when no annotation is left.
func withNotes(annotations map[string]string, n election.Notes) map[string]string {
	out := maps.Clone(annotations)
	if out == nil {
		out = map[string]string{}
	}
	for _, key := range retiredAnnotations {
		delete(out, key)
	}
	for key, value := range map[string]string{
		AnnotationHolderUID:      n.HolderUID,
		AnnotationHolderKey:      n.HolderKey,
		AnnotationStandby:        n.Standby,
		AnnotationStandbyAddress: n.StandbyAddress,
	} {
		if value == "" {
			delete(out, key)
		} else {
			out[key] = value
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
