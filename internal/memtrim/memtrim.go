// Package memtrim hands back to the kernel the pages of the program's own
// binary that only start-up needed.
//
// Package initialisation touches most of the binary once: client-go's
// kubernetes/scheme alone, which tools/events imports, registers every API
// type, faulting in megabytes of type data that the running sidecar never
// reads again. Those pages are clean and file-backed, so they stay resident
// (and are counted in VmRSS) until memory runs short. Release drops them from
// the process's page tables with madvise(MADV_DONTNEED): the kernel keeps
// them in its page cache, shared by every process of the same image, and a
// page that is needed again is mapped back by a minor fault.
package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mapping is one line of /proc/self/maps.
type mapping struct {
	start, end uint64
	perms      string
	inode      uint64
}

// parseMaps reads the mappings of /proc/<pid>/maps text.
func parseMaps(data []byte) ([]mapping, error) {
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			return nil, fmt.Errorf("parse mapping %q: no address range", sc.Text())
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		inode, err3 := strconv.ParseUint(f[4], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil || end < start {
			return nil, fmt.Errorf("parse mapping %q: bad address range or inode", sc.Text())
		}
		out = append(out, mapping{start: start, end: end, perms: f[1], inode: inode})
	}
	return out, sc.Err()
}

// readOnlyOf returns the mappings of the file with inode ino that are neither
// writable nor shared: the binary's text and read-only data, whose pages are
// always the file's own and can be dropped without losing anything.
func readOnlyOf(maps []mapping, ino uint64) []mapping {
	var out []mapping
	for _, m := range maps {
		if m.inode == ino && ino != 0 && len(m.perms) == 4 && m.perms[1] != 'w' && m.perms[3] == 'p' {
			out = append(out, m)
		}
	}
	return out
}

// rssFile returns RssFile of /proc/self/status in bytes.
func rssFile() (int64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(data)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "RssFile:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no RssFile in /proc/self/status")
}
