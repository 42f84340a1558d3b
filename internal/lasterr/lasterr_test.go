package lasterr

import (
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
)

// TestOnErrorSeesRepeatedErrors: the log shows each distinct error once,
// the hook every one, as a counter needs.
func TestOnErrorSeesRepeatedErrors(t *testing.T) {
	var seen []string
	tr := New(slog.New(slog.NewTextHandler(io.Discard, nil)), "failed", "recovered").OnError(func(err error) { seen = append(seen, err.Error()) })
	changed := []bool{tr.Note(errors.New("a")), tr.Note(errors.New("a")), tr.Note(nil), tr.Note(errors.New("b"))}
	if want := []bool{true, false, true, true}; !slices.Equal(changed, want) {
		t.Errorf("Note reported changes %v, want %v", changed, want)
	}
	if len(seen) != 3 || seen[0] != "a" || seen[1] != "a" || seen[2] != "b" {
		t.Errorf("OnError saw %q, want [a a b]", seen)
	}
	if tr.Last() != "b" {
		t.Errorf("Last() = %q, want b", tr.Last())
	}
}
