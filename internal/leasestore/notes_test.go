package leasestore

import (
	"maps"
	"testing"

	"github.com/leader-elector/leader-elector/election"
)

// TestNotesRoundTrip: every note has its annotation, written, read back and
// removed when empty, with other annotations kept, and those of earlier
// versions removed.
func TestNotesRoundTrip(t *testing.T) {
	full := election.Notes{HolderUID: "uid-1", HolderKey: "a2V5", Standby: "b", StandbyAddress: "10.0.0.7:8080"}
	old := map[string]string{"other": "kept", "leader-elector.io/successor": "c", "leader-elector.io/granted-by": "d", "leader-elector.io/refused": "e"}
	got := withNotes(old, full)
	want := map[string]string{"other": "kept", AnnotationHolderUID: "uid-1", AnnotationHolderKey: "a2V5", AnnotationStandby: "b",
		AnnotationStandbyAddress: "10.0.0.7:8080"}
	if !maps.Equal(got, want) {
		t.Errorf("withNotes = %v, want %v", got, want)
	}
	if back := notesFrom(got); back != full {
		t.Errorf("notesFrom(withNotes(n)) = %+v, want %+v", back, full)
	}
	// A withdrawn offer clears the address with the standby.
	cleared := withNotes(got, election.Notes{HolderUID: "uid-1"})
	if want := map[string]string{"other": "kept", AnnotationHolderUID: "uid-1"}; !maps.Equal(cleared, want) {
		t.Errorf("withNotes without a standby = %v, want %v", cleared, want)
	}
}
