// Package dist makes the release's files: a static binary per platform
// (what k8s-await-election's users copy into their images), the kubectl
// plugin's archives, a CycloneDX SBOM per binary, SHA256SUMS over them all,
// and the krew manifest that names the archives by their checksums. Every
// file is dated at the commit's time, so two runs on one commit give the
// same bytes.
package dist

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/leader-elector/leader-elector/release/build"
)

// Platforms are the release's: k8s-await-election's architectures for the
// sidecar, and macOS for the CLI subcommands and the kubectl plugin.
var Platforms = []build.Platform{
	{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}, {OS: "linux", Arch: "arm", Variant: "v7"},
	{OS: "linux", Arch: "ppc64le"}, {OS: "linux", Arch: "s390x"},
	{OS: "darwin", Arch: "amd64"}, {OS: "darwin", Arch: "arm64"},
}

// pluginPlatforms get a kubectl plugin archive: where kubectl runs.
var pluginPlatforms = []build.Platform{
	{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"},
	{OS: "darwin", Arch: "amd64"}, {OS: "darwin", Arch: "arm64"},
}

// Release is what Make wrote.
type Release struct {
	Dir       string
	Binaries  []string // file names in Dir
	Archives  []string
	SBOMs     []string
	Sums      string // SHA256SUMS
	Krew      string // the krew manifest
	checksums map[string]string
}

// Options are a release's inputs.
type Options struct {
	Repo      string // the repository's root
	Stamp     build.Stamp
	Created   time.Time // the commit's time
	Platforms []build.Platform
	Out       string // emptied first
	// DownloadURL is where the files are published, with %s for the
	// version: the krew manifest's URIs.
	DownloadURL string
}

// DownloadURL is where a tag's release files are published.
const DownloadURL = "https://github.com/leader-elector/leader-elector/releases/download/%s"

// Make builds opts.Platforms and writes the release into opts.Out.
func Make(ctx context.Context, opts Options) (*Release, error) {
	if err := os.RemoveAll(opts.Out); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := os.MkdirAll(opts.Out, 0o755); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	license, err := os.ReadFile(filepath.Join(opts.Repo, "LICENSE"))
	if err != nil {
		return nil, fmt.Errorf("release: the archives carry the licence: %w", err)
	}
	r := &Release{Dir: opts.Out, checksums: map[string]string{}}
	build_ := filepath.Join(opts.Out, ".build")
	defer os.RemoveAll(build_)
	for _, p := range opts.Platforms {
		suffix := strings.ReplaceAll(p.String(), "/", "-")
		exe, err := build.Binary(ctx, opts.Repo, opts.Stamp, p, filepath.Join(build_, suffix))
		if err != nil {
			return nil, err
		}
		data, err := os.ReadFile(exe)
		if err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
		bin := fmt.Sprintf("leader-elector-%s-%s", opts.Stamp.Version, suffix)
		if err := r.write(bin, data, 0o755); err != nil {
			return nil, err
		}
		r.Binaries = append(r.Binaries, bin)
		var sbom bytes.Buffer
		if err := SBOM(&sbom, exe, opts.Stamp.Version, opts.Created); err != nil {
			return nil, err
		}
		if err := r.write(bin+".cdx.json", sbom.Bytes(), 0o644); err != nil {
			return nil, err
		}
		r.SBOMs = append(r.SBOMs, bin+".cdx.json")
		if slices.Contains(pluginPlatforms, p) {
			archive, err := tarGz(opts.Created, []tarFile{{"kubectl-leader", data, 0o755}, {"LICENSE", license, 0o644}})
			if err != nil {
				return nil, fmt.Errorf("release: archive for %s: %w", p, err)
			}
			name := fmt.Sprintf("kubectl-leader-%s-%s.tar.gz", opts.Stamp.Version, suffix)
			if err := r.write(name, archive, 0o644); err != nil {
				return nil, err
			}
			r.Archives = append(r.Archives, name)
		}
	}
	krew, err := r.krewManifest(opts)
	if err != nil {
		return nil, err
	}
	r.Krew = "leader.yaml"
	if err := r.write(r.Krew, krew, 0o644); err != nil {
		return nil, err
	}
	var sums strings.Builder
	for _, f := range slices.Sorted(maps.Keys(r.checksums)) {
		fmt.Fprintf(&sums, "%s  %s\n", r.checksums[f], f)
	}
	r.Sums = "SHA256SUMS"
	if err := os.WriteFile(filepath.Join(opts.Out, r.Sums), []byte(sums.String()), 0o644); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	return r, nil
}

// write writes a release file and notes its checksum.
func (r *Release) write(name string, data []byte, mode os.FileMode) error {
	if err := os.WriteFile(filepath.Join(r.Dir, name), data, mode); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	sum := sha256.Sum256(data)
	r.checksums[name] = hex.EncodeToString(sum[:])
	return nil
}

type tarFile struct {
	name string
	data []byte
	mode int64
}

// tarGz is a gzipped tar of files in their order, dated mtime, root-owned.
func tarGz(mtime time.Time, files []tarFile) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime.UTC(), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// krewManifest is the krew plugin manifest of the archives.
func (r *Release) krewManifest(opts Options) ([]byte, error) {
	base := fmt.Sprintf(opts.DownloadURL, opts.Stamp.Version)
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: leader
spec:
  version: %s
  homepage: https://github.com/leader-elector/leader-elector
  shortDescription: Show, await and move the leader of a workload's Lease
  description: |
    kubectl leader status shows which pod leads a workload elected by
    leader-elector (or any elector of a coordination.k8s.io Lease), its
    term, and each pod's role label; await waits for a leader; resign makes
    the leader's sidecar hand over. It is the leader-elector binary run
    under the name kubectl-leader; see its --help.
  platforms:
`, opts.Stamp.Version)
	for _, a := range r.Archives {
		suffix := strings.TrimSuffix(strings.TrimPrefix(a, "kubectl-leader-"+opts.Stamp.Version+"-"), ".tar.gz")
		osName, arch, _ := strings.Cut(suffix, "-")
		fmt.Fprintf(&b, `  - selector:
      matchLabels:
        os: %s
        arch: %s
    uri: %s/%s
    sha256: %s
    bin: kubectl-leader
    files:
      - from: kubectl-leader
        to: .
      - from: LICENSE
        to: .
`, osName, arch, base, a, r.checksums[a])
	}
	if len(r.Archives) == 0 {
		return nil, fmt.Errorf("release: no platform of the kubectl plugin (%v) was built", pluginPlatforms)
	}
	return []byte(b.String()), nil
}
