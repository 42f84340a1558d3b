// Command release makes what a user installs, from the repository's root
// (the Makefile's image and release targets run it):
//
//	go run ./release image   [flags]  the multi-platform OCI image: a layout, an archive, a push
//	go run ./release binaries [flags]  the release binaries, SHA256SUMS, SBOMs, the krew manifest
//
// Both build by the repository's `make build`, stamped with -version,
// -commit and -date (the commit's time), so that two runs on one commit
// give the same bytes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/leader-elector/leader-elector/release/build"
	"github.com/leader-elector/leader-elector/release/image"
)

// Repository is where the image is published, and Krew's plugin source.
const Repository = "ghcr.io/leader-elector/leader-elector"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: release image|binaries [flags]")
		return 2
	}
	var err error
	switch args[0] {
	case "image":
		err = imageCmd(ctx, args[1:], stdout, stderr)
	case "binaries":
		err = binariesCmd(ctx, args[1:], stdout, stderr)
	default:
		err = fmt.Errorf("%w: unknown command %q: want image or binaries", errUsage, args[0])
	}
	switch {
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		fmt.Fprintln(stderr, "release:", err)
		return 2
	case err != nil:
		fmt.Fprintln(stderr, "release:", err)
		return 1
	}
	return 0
}

var errUsage = errors.New("usage")

// stampFlags are the flags both commands take: the stamp, the repo, where
// to write, and the platforms.
type stampFlags struct {
	stamp     build.Stamp
	repo      string
	out       string
	platforms string
}

func (s *stampFlags) register(fs *flag.FlagSet, out string, platforms []build.Platform) {
	var names []string
	for _, p := range platforms {
		names = append(names, p.String())
	}
	fs.StringVar(&s.platforms, "platforms", strings.Join(names, ","), "the platforms to build")
	fs.StringVar(&s.stamp.Version, "version", "", "the version to stamp (the release tag, v0.x.y), required")
	fs.StringVar(&s.stamp.Commit, "commit", "", "the commit to stamp, required")
	fs.StringVar(&s.stamp.Date, "date", "", "the commit's time, RFC 3339 UTC, required: every file is dated so")
	fs.StringVar(&s.repo, "repo", ".", "the repository's root")
	fs.StringVar(&s.out, "out", out, "where to write")
}

// parse parses args and returns the commit's time and the platforms.
func (s *stampFlags) parse(fs *flag.FlagSet, args []string) (time.Time, []build.Platform, error) {
	if err := fs.Parse(args); err != nil {
		return time.Time{}, nil, err
	}
	created, err := s.check()
	if err != nil {
		return time.Time{}, nil, err
	}
	ps, err := platforms(s.platforms)
	return created, ps, err
}

func (s *stampFlags) check() (time.Time, error) {
	var missing []string
	for _, f := range []struct{ flag, v string }{{"-version", s.stamp.Version}, {"-commit", s.stamp.Commit}, {"-date", s.stamp.Date}} {
		if f.v == "" {
			missing = append(missing, f.flag)
		}
	}
	if len(missing) > 0 {
		return time.Time{}, fmt.Errorf("%w: %s required", errUsage, strings.Join(missing, ", "))
	}
	t, err := time.Parse(time.RFC3339, s.stamp.Date)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: -date=%q: must be RFC 3339 (2026-12-07T08:00:00Z): %v", errUsage, s.stamp.Date, err)
	}
	// The builds run make in the repository: relative paths would resolve
	// from there, not from here.
	for _, p := range []*string{&s.repo, &s.out} {
		if *p, err = filepath.Abs(*p); err != nil {
			return time.Time{}, err
		}
	}
	return t, nil
}

func platforms(list string) ([]build.Platform, error) {
	var ps []build.Platform
	for s := range strings.SplitSeq(list, ",") {
		p, err := build.ParsePlatform(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("%w: -platforms: %v", errUsage, err)
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func imageCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("release image", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s stampFlags
	s.register(fs, "bin/image", []build.Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}})
	tag := fs.String("tag", "", "the reference the layout and archive name (default "+Repository+":VERSION)")
	push := fs.String("push", "", "also push the index to this reference (registry/repository:tag)")
	created, ps, err := s.parse(fs, args)
	if err != nil {
		return err
	}
	if *tag == "" {
		*tag = Repository + ":" + s.stamp.Version
	}
	ref, err := name.NewTag(*tag)
	if err != nil {
		return fmt.Errorf("%w: -tag=%q: %v", errUsage, *tag, err)
	}
	idx, err := image.FromSource(ctx, s.repo, s.stamp, created, ps, filepath.Join(s.out, "bin"))
	if err != nil {
		return err
	}
	layoutDir, archive := filepath.Join(s.out, "oci"), filepath.Join(s.out, "leader-elector-"+s.stamp.Version+".oci.tar")
	if err := image.WriteLayout(layoutDir, ref, idx); err != nil {
		return err
	}
	if err := image.WriteArchive(archive, layoutDir, created); err != nil {
		return err
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s@%s\n  layout:  %s\n  archive: %s\n", ref, digest, layoutDir, archive)
	if *push != "" {
		to, err := name.NewTag(*push)
		if err != nil {
			return fmt.Errorf("%w: -push=%q: %v", errUsage, *push, err)
		}
		if err := remote.WriteIndex(to, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return fmt.Errorf("push %s: %w", to, err)
		}
		fmt.Fprintf(stdout, "pushed %s@%s\n", to, digest)
	}
	return nil
}
