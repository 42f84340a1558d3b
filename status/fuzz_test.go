package status

import (
	"cmp"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolve: any STATUS_FILE and STATUS_DIR give either a clean absolute
// path that is not a symbolic link, "" for Off alone, or one line of
// *PathError; never a panic.
// The seed corpus is in testdata/fuzz/FuzzResolve.
func FuzzResolve(f *testing.F) {
	f.Add("", "")
	f.Add("/tmp/leader_status", "/other")
	f.Fuzz(func(t *testing.T, statusFile, statusDir string) {
		got, err := Resolve(statusFile, statusDir)
		if err != nil {
			var pe *PathError
			if !errors.As(err, &pe) {
				t.Fatalf("Resolve(%q, %q) error %v (%T), want a *PathError", statusFile, statusDir, err, err)
			}
			if strings.ContainsAny(err.Error(), "\n\x00") {
				t.Fatalf("Resolve(%q, %q) error %q, want one printable line", statusFile, statusDir, err)
			}
			return
		}
		if p := cmp.Or(statusFile, statusDir); p == Off || got == "" {
			if p != Off || got != "" {
				t.Fatalf("Resolve(%q, %q) = %q: only %q turns the file off, and then the path is empty", statusFile, statusDir, got, Off)
			}
			return
		}
		if !filepath.IsAbs(got) || filepath.Clean(got) != got || strings.IndexByte(got, 0) >= 0 {
			t.Fatalf("Resolve(%q, %q) = %q, want a clean absolute path", statusFile, statusDir, got)
		}
		if fi, err := os.Lstat(got); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			t.Fatalf("Resolve(%q, %q) = %q, a symbolic link", statusFile, statusDir, got)
		}
	})
}
