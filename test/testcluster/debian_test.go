package testcluster

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/leader-elector/leader-elector/internal/testutil"
)

// TestDebianPackagesFetchesOnce fetches busybox-static into an empty cache
// from two callers at once, as parallel test packages do: one downloads,
// the other waits for it, both get the same complete root, and a later call
// answers from the cache without a word.
func TestDebianPackagesFetchesOnce(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("LEADER_ELECTOR_BIN_CACHE", cache)
	var log testutil.SyncBuffer
	roots := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range roots {
		wg.Go(func() { roots[i], errs[i] = DebianPackages(&log, "busybox-static") })
	}
	wg.Wait()
	t.Log(log.String())
	for i, err := range errs {
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if roots[0] != roots[1] {
		t.Errorf("roots differ: %s, %s", roots[0], roots[1])
	}
	if n := strings.Count(log.String(), "debian packages: fetching"); n != 1 {
		t.Errorf("fetched %d times, want once", n)
	}
	root := roots[0]
	if !strings.HasPrefix(root, filepath.Join(cache, "debs")+"/") || filepath.Base(root) != "root" {
		t.Errorf("root %s, want debs/<hash>/root under %s", root, cache)
	}
	fi, err := os.Stat(filepath.Join(root, "bin", "busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&0o111 == 0 {
		t.Errorf("bin/busybox mode %v, want executable", fi.Mode())
	}
	list, err := os.ReadFile(filepath.Join(filepath.Dir(root), "packages"))
	if err != nil || !strings.HasPrefix(string(list), "busybox-static=") {
		t.Errorf("package list %q (%v), want busybox-static=<version>", list, err)
	}
	left, _ := filepath.Glob(filepath.Join(cache, "debs", ".tmp-*"))
	if len(left) > 0 {
		t.Errorf("temp dirs left in the cache: %v", left)
	}

	var again bytes.Buffer
	got, err := DebianPackages(&again, "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	if got != root || again.Len() != 0 {
		t.Errorf("second call: %s with log %q, want %s from the cache, silently", got, again.String(), root)
	}
}

// TestDebianPackagesNeedsAptGet checks the error on a machine without apt.
func TestDebianPackagesNeedsAptGet(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	_, err := DebianPackages(&bytes.Buffer{}, "containerd")
	if err == nil || !strings.Contains(err.Error(), "apt-get not found") || !strings.Contains(err.Error(), "Debian or Ubuntu") {
		t.Errorf("err = %v, want apt-get not found on a Debian or Ubuntu machine", err)
	}
}
