package main

import (
	"bytes"
	"context"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestImageFromTheMakefile runs the image command as `make image PUSH=...`
// does, from release/ with relative paths, for one platform, and checks
// what it wrote where the Makefile says, and what it pushed (to a registry
// in this process).
func TestImageFromTheMakefile(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	out, err := filepath.Rel(wd, filepath.Join(t.TempDir(), "image"))
	if err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	push := strings.TrimPrefix(reg.URL, "http://") + "/team/leader-elector:v0.0.0-test"
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"image", "-repo", "..", "-out", out, "-version", "v0.0.0-test", "-commit", "0123abc",
		"-date", "2026-12-07T08:00:00Z", "-platforms", "linux/amd64", "-tag", "example.invalid/leader-elector:v0.0.0-test", "-push", push}, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, f := range []string{"oci/index.json", "leader-elector-v0.0.0-test.oci.tar", "bin/linux-amd64/leader-elector"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	first, _, _ := strings.Cut(stdout.String(), "\n")
	_, digest, ok := strings.Cut(first, "@")
	if !strings.HasPrefix(first, "example.invalid/leader-elector:v0.0.0-test@sha256:") || !ok {
		t.Fatalf("stdout = %q", stdout.String())
	}
	ref, err := name.NewTag(push)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("the pushed index: %v", err)
	}
	if got, _ := idx.Digest(); got.String() != digest {
		t.Errorf("the registry serves %s as %s, want %s", push, got, digest)
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
