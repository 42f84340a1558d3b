// Package build builds the leader-elector binary for one platform by the
// repository's own `make build`, the target the Dockerfile and the tests
// use, so that what ships is what is tested.
package build

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Stamp is what a build writes into the binary, as --version prints it.
type Stamp struct {
	// Version is the release tag (v0.x.y) or git describe's answer.
	Version string
	// Commit is the full commit hash.
	Commit string
	// Date is the commit's time, RFC 3339 in UTC: two builds of one commit
	// are the same.
	Date string
}

// Platform is an operating system and architecture, with the variant for
// 32-bit ARM ("v7").
type Platform struct{ OS, Arch, Variant string }

// String is the platform as Go and OCI write it: linux/arm/v7.
func (p Platform) String() string {
	s := p.OS + "/" + p.Arch
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// ParsePlatform reads os/arch or os/arm/vN.
func ParsePlatform(s string) (Platform, error) {
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch or os/arch/variant", s)
	}
	p := Platform{OS: parts[0], Arch: parts[1]}
	if len(parts) == 3 {
		if p.Arch != "arm" || !strings.HasPrefix(parts[2], "v") {
			return Platform{}, fmt.Errorf("platform %q: a variant is only known for arm (v6, v7)", s)
		}
		p.Variant = parts[2]
	}
	return p, nil
}

// env is the platform's Go environment.
func (p Platform) env() []string {
	env := []string{"GOOS=" + p.OS, "GOARCH=" + p.Arch}
	if p.Variant != "" {
		env = append(env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	return env
}

// Binary runs `make build` in repo for p with stamp, into dir, and returns
// the binary's path (dir/leader-elector).
func Binary(ctx context.Context, repo string, stamp Stamp, p Platform, dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("build for %s: %w", p, err)
	}
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "build", "BIN="+dir,
		"VERSION="+stamp.Version, "COMMIT="+stamp.Commit, "DATE="+stamp.Date)
	cmd.Dir = repo
	cmd.Env = append(os.Environ(), p.env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build for %s: %s: %w: %s", p, strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(dir, "leader-elector"), nil
}
