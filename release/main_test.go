package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestImageFromTheMakefile runs the image command as `make image` does,
// from release/ with relative paths, for one platform, and checks what it
// wrote where the Makefile says.
func TestImageFromTheMakefile(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	out, err := filepath.Rel(wd, filepath.Join(t.TempDir(), "image"))
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"image", "-repo", "..", "-out", out, "-version", "v0.0.0-test", "-commit", "0123abc",
		"-date", "2026-12-07T08:00:00Z", "-platforms", "linux/amd64", "-tag", "example.invalid/leader-elector:v0.0.0-test"}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"oci/index.json", "leader-elector-v0.0.0-test.oci.tar", "bin/linux-amd64/leader-elector"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if !strings.HasPrefix(stdout.String(), "example.invalid/leader-elector:v0.0.0-test@sha256:") {
		t.Errorf("stdout = %q", stdout.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "usage: release image|binaries"},
		{[]string{"publish"}, `unknown command "publish"`},
		{[]string{"image"}, "-version, -commit, -date required"},
		{[]string{"binaries", "-version", "v1", "-commit", "c", "-date", "yesterday"}, `-date="yesterday": must be RFC 3339`},
		{[]string{"image", "-version", "v1", "-commit", "c", "-date", "2026-12-07T08:00:00Z", "-platforms", "linux"}, `platform "linux": want os/arch`},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tc.args, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("release %v: exit %d, stderr %q; want 2 and %q", tc.args, code, stderr.String(), tc.want)
		}
	}
}
