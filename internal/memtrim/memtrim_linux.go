package memtrim

import (
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Release drops the resident pages of the binary's read-only mappings and
// returns by how much the process's file-backed resident memory shrank.
func Release() (int64, error) {
	fi, err := os.Stat("/proc/self/exe")
	if err != nil {
		return 0, fmt.Errorf("release start-up pages: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, fmt.Errorf("release start-up pages: no inode for /proc/self/exe")
	}
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return 0, fmt.Errorf("release start-up pages: %w", err)
	}
	maps, err := parseMaps(data)
	if err != nil {
		return 0, fmt.Errorf("release start-up pages: %w", err)
	}
	before, _ := rssFile()
	for _, m := range readOnlyOf(maps, st.Ino) {
		// The raw call: the range is the binary's own, not Go memory.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED); errno != 0 {
			return 0, fmt.Errorf("release start-up pages: madvise %x-%x: %w", m.start, m.end, errno)
		}
	}
	after, _ := rssFile()
	return before - after, nil
}
