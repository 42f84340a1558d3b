package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/leader-elector/leader-elector/release/dist"
)

func binariesCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("release binaries", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var s stampFlags
	s.register(fs, "bin/release", dist.Platforms)
	created, ps, err := s.parse(fs, args)
	if err != nil {
		return err
	}
	r, err := dist.Make(ctx, dist.Options{Repo: s.repo, Stamp: s.stamp, Created: created, Platforms: ps, Out: s.out, DownloadURL: dist.DownloadURL})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %d binaries, %d plugin archives, %d SBOMs, %s, %s\n", r.Dir, len(r.Binaries), len(r.Archives), len(r.SBOMs), r.Sums, r.Krew)
	return nil
}
