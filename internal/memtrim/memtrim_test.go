package memtrim

import (
	"testing"
)

func TestReadOnlyOf(t *testing.T) {
	maps, err := parseMaps([]byte(`00400000-011ea000 r-xp 00000000 fd:01 1234 /bin/leader-elector
011ea000-01ee2000 r--p 00dea000 fd:01 1234 /bin/leader-elector
01ee2000-01f30000 rw-p 01ae2000 fd:01 1234 /bin/leader-elector
01f30000-01f70000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--s 00000000 fd:01 1234 /bin/leader-elector
7f0000002000-7f0000003000 r--p 00000000 fd:01 99 /etc/other
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0                          [stack]
`))
	if err != nil {
		t.Fatal(err)
	}
	got := readOnlyOf(maps, 1234)
	want := []mapping{{0x400000, 0x11ea000, "r-xp", 1234}, {0x11ea000, 0x1ee2000, "r--p", 1234}}
	if len(got) != len(want) {
		t.Fatalf("readOnlyOf = %+v, want %+v (no writable, shared or other file's mappings)", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if got := readOnlyOf(maps, 0); len(got) != 0 {
		t.Errorf("inode 0 (anonymous) matched %+v", got)
	}
}

func TestParseMapsRejectsGarbage(t *testing.T) {
	for _, line := range []string{"zz-00 r-xp 0 fd:01 1 /x", "0010-0000 r-xp 0 fd:01 1 /x", "0000-0010 r-xp 0 fd:01 inode /x", "nodash r-xp 0 fd:01 1 /x"} {
		if _, err := parseMaps([]byte(line + "\n")); err == nil {
			t.Errorf("parseMaps(%q) = nil error", line)
		}
	}
}

// TestReleaseKeepsTheProgramWorking drops this test binary's own read-only
// pages and then runs code and reads data that were resident before.
func TestReleaseKeepsTheProgramWorking(t *testing.T) {
	before, err := rssFile()
	if err != nil {
		t.Fatal(err)
	}
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("RssFile %d KiB before, released %d KiB", before>>10, released>>10)
	if released <= 0 {
		t.Errorf("released %d bytes of %d resident file-backed bytes, want some", released, before)
	}
	// Code and read-only data fault back in.
	if _, err := parseMaps([]byte("00400000-011ea000 r-xp 00000000 fd:01 1234 /x\n")); err != nil {
		t.Fatal(err)
	}
}
