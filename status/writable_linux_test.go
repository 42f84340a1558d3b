package status

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of one 4 KiB page in a temp dir and unmounts it
// when the test ends. It skips the test only when mounting is not permitted
// (not root, or no CAP_SYS_ADMIN); TestWritable covers the cases that need
// no mount.
func mountTmpfs(t *testing.T, flags uintptr) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", flags, "size=4k,mode=0777"); err != nil {
		if errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) {
			t.Skipf("mount a tmpfs on %s: %v: mounting is not permitted here", dir, err)
		}
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	// Registered after t.TempDir's cleanup, so it runs before the removal.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestWritableCatchesAFullFilesystem: on a full filesystem an empty file can
// still be created, but the status file cannot be written; readiness must
// say so.
func TestWritableCatchesAFullFilesystem(t *testing.T) {
	dir := mountTmpfs(t, 0)
	f := New(filepath.Join(dir, "leader_status"), discard)
	if err := f.Writable(); err != nil {
		t.Fatalf("Writable() on an empty tmpfs = %v, want nil", err)
	}
	fill := filepath.Join(dir, "fill")
	if err := os.WriteFile(fill, make([]byte, 4096), 0o644); err != nil {
		t.Fatalf("fill the tmpfs: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "one-more"), []byte{1}, 0o644); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the tmpfs is not full: writing a byte gave %v, want ENOSPC", err)
	}
	if err := os.Remove(filepath.Join(dir, "one-more")); err != nil {
		t.Fatal(err)
	}

	err := f.Writable()
	if !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("Writable() on a full filesystem = %v, want ENOSPC naming %s as not writable", err, dir)
	}
	if err := f.Publish("pod-0"); !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("Publish() on a full filesystem = %v, want ENOSPC (Writable agrees with it)", err)
	}
	if got := dirEntries(t, dir); len(got) != 1 || got[0] != "fill" {
		t.Errorf("the full filesystem holds %q, want only fill: no probe or temp file left behind", got)
	}

	// Space again: writable again.
	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	if err := f.Writable(); err != nil {
		t.Errorf("Writable() after freeing space = %v, want nil", err)
	}
}

// TestWritableReadOnlyFilesystem: a read-only directory, which root cannot
// write either (unlike one without write permission).
func TestWritableReadOnlyFilesystem(t *testing.T) {
	dir := mountTmpfs(t, syscall.MS_RDONLY)
	f := New(filepath.Join(dir, "leader_status"), discard)
	err := f.Writable()
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), dir) || !strings.Contains(err.Error(), "not writable") {
		t.Errorf("Writable() on a read-only filesystem = %v, want EROFS naming %s as not writable", err, dir)
	}
}
