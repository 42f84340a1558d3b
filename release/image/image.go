// Package image builds the leader-elector image without a container
// engine: one OCI index of a single-layer image per platform, the static
// binary at /leader-elector on what of distroless static:nonroot a static Go
// binary uses, user 65532:65532. Every byte follows from the binaries and
// the Meta: files and the image are dated at the commit's time, layers are
// written in path order, so two builds of one commit give one digest.
package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/leader-elector/leader-elector/release/build"
)

// Meta is what the image says about itself, as OCI annotations on the
// index and each manifest, and as labels of each image's config.
type Meta struct {
	Version  string    // org.opencontainers.image.version
	Revision string    // org.opencontainers.image.revision: the commit
	Source   string    // org.opencontainers.image.source: the repository
	Created  time.Time // the commit's time: every file's and the image's
}

// The repository's address and the image's licence, for Meta and the
// annotations.
const (
	Source  = "https://github.com/leader-elector/leader-elector"
	License = "Apache-2.0"
)

func (m Meta) annotations() map[string]string {
	return map[string]string{
		"org.opencontainers.image.title":       "leader-elector",
		"org.opencontainers.image.description": "Elects one leader among the replicas of a Kubernetes workload through a Lease",
		"org.opencontainers.image.source":      m.Source,
		"org.opencontainers.image.version":     m.Version,
		"org.opencontainers.image.revision":    m.Revision,
		"org.opencontainers.image.licenses":    License,
		"org.opencontainers.image.created":     m.Created.UTC().Format(time.RFC3339),
	}
}

// PATH is the PATH of distroless and busybox images.
const PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// File is one file of a layer. Directories its files need and that are not
// listed are made root-owned 0755.
type File struct {
	Name     string      // absolute path in the image
	Mode     fs.FileMode // permissions with fs.ModeDir, fs.ModeSymlink or fs.ModeSticky
	UID, GID int
	Data     []byte // a regular file's content
	Link     string // a symlink's target
}

// NonrootFiles are what of gcr.io/distroless/static-debian12:nonroot
// matters to a static Go binary: the users and groups, a home, /tmp. (No
// CA certificates: the sidecar trusts only the ServiceAccount's CA.)
func NonrootFiles() []File {
	return []File{
		{Name: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Name: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n")},
		{Name: "/etc/nsswitch.conf", Mode: 0o644, Data: []byte("hosts: files dns\n")},
		{Name: "/home/nonroot", Mode: fs.ModeDir | 0o700, UID: 65532, GID: 65532},
		{Name: "/root", Mode: fs.ModeDir | 0o700},
		{Name: "/tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
}

// Layer returns the gzipped tar of files, in path order, every file dated
// mtime, so that the same files give the same digest.
func Layer(files []File, mtime time.Time) (v1.Layer, error) {
	data, err := layerTar(files, mtime)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}

func layerTar(files []File, mtime time.Time) ([]byte, error) {
	byName := map[string]File{}
	for _, f := range files {
		if _, dup := byName[f.Name]; dup {
			return nil, fmt.Errorf("layer: %s listed twice", f.Name)
		}
		byName[f.Name] = f
	}
	for _, f := range files {
		for d := path.Dir(f.Name); d != "/"; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = File{Name: d, Mode: fs.ModeDir | 0o755}
			}
		}
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, n := range slices.Sorted(maps.Keys(byName)) {
		f := byName[n]
		h := &tar.Header{Name: strings.TrimPrefix(n, "/"), Mode: int64(f.Mode.Perm()), Uid: f.UID, Gid: f.GID,
			ModTime: mtime.UTC(), Format: tar.FormatPAX}
		if f.Mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case f.Mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case f.Mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.Link
		case f.Mode.IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.Data))
		default:
			return nil, fmt.Errorf("layer: %s: unsupported mode %v", n, f.Mode)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", n, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", n, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// Single returns the one-layer image of files for p, with cfg, dated
// created; labels, if any, go on the config and as the manifest's
// annotations.
func Single(p build.Platform, cfg v1.Config, files []File, created time.Time, labels map[string]string, history string) (v1.Image, error) {
	layer, err := Layer(files, created)
	if err != nil {
		return nil, err
	}
	if len(labels) > 0 {
		cfg.Labels = labels
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: p.Arch, OS: p.OS, Variant: p.Variant,
		Created: v1.Time{Time: created.UTC()},
		Config:  cfg,
	})
	if err != nil {
		return nil, fmt.Errorf("image for %s: config: %w", p, err)
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created.UTC()}, CreatedBy: history,
	}})
	if err != nil {
		return nil, fmt.Errorf("image for %s: append the layer: %w", p, err)
	}
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if len(labels) > 0 {
		img = mutate.Annotations(img, labels).(v1.Image)
	}
	return img, nil
}

// Build returns the index of one image per platform, each the static
// binary bins[p] at /leader-elector.
func Build(bins map[build.Platform]string, m Meta) (v1.ImageIndex, error) {
	if len(bins) == 0 {
		return nil, fmt.Errorf("build the image: no platform given")
	}
	platforms := slices.SortedFunc(maps.Keys(bins), func(a, b build.Platform) int { return strings.Compare(a.String(), b.String()) })
	var adds []mutate.IndexAddendum
	for _, p := range platforms {
		data, err := os.ReadFile(bins[p])
		if err != nil {
			return nil, fmt.Errorf("build the image for %s: %w", p, err)
		}
		if p.OS != "linux" {
			return nil, fmt.Errorf("build the image for %s: images are for linux only", p)
		}
		files := append(NonrootFiles(), File{Name: "/leader-elector", Mode: 0o755, Data: data})
		img, err := Single(p, v1.Config{
			User:       "65532:65532",
			Entrypoint: []string{"/leader-elector"},
			Env:        []string{PATH},
			WorkingDir: "/home/nonroot",
		}, files, m.Created, m.annotations(), "release/image: COPY leader-elector /leader-elector")
		if err != nil {
			return nil, err
		}
		adds = append(adds, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{
			Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch, Variant: p.Variant},
		}})
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), adds...)
	return mutate.Annotations(idx, m.annotations()).(v1.ImageIndex), nil
}

// WriteLayout writes idx as an OCI image layout in dir (emptied first),
// naming it ref in index.json the ways containerd (io.containerd.image.name)
// and the OCI spec (org.opencontainers.image.ref.name: the tag) read: what
// `crane push DIR REF` (its one entry, the index) and, tarred by WriteArchive, `ctr images
// import` and `docker load` take.
func WriteLayout(dir string, ref name.Tag, idx v1.ImageIndex) error {
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("write the image layout: %w", err)
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return fmt.Errorf("write the image layout %s: %w", dir, err)
	}
	err = p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          ref.Name(),
		"org.opencontainers.image.ref.name": ref.TagStr(),
	}))
	if err != nil {
		return fmt.Errorf("write the image layout %s: %w", dir, err)
	}
	return nil
}

// WriteArchive tars the layout dir into file, in path order, every entry
// dated mtime and owned by root: an OCI archive.
func WriteArchive(file, dir string, mtime time.Time) error {
	var names []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != dir {
			names = append(names, p)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("archive the image layout %s: %w", dir, err)
	}
	slices.Sort(names)
	out, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("archive the image layout: %w", err)
	}
	tw := tar.NewWriter(out)
	for _, p := range names {
		st, err := os.Lstat(p)
		if err != nil {
			out.Close()
			return fmt.Errorf("archive the image layout: %w", err)
		}
		rel, _ := filepath.Rel(dir, p)
		h := &tar.Header{Name: filepath.ToSlash(rel), Mode: 0o644, ModTime: mtime.UTC(), Typeflag: tar.TypeReg, Size: st.Size(), Format: tar.FormatPAX}
		if st.IsDir() {
			h.Name, h.Mode, h.Typeflag, h.Size = h.Name+"/", 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			out.Close()
			return fmt.Errorf("archive the image layout: %w", err)
		}
		if !st.IsDir() {
			data, err := os.ReadFile(p)
			if err == nil {
				_, err = tw.Write(data)
			}
			if err != nil {
				out.Close()
				return fmt.Errorf("archive the image layout: %w", err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		out.Close()
		return fmt.Errorf("archive the image layout: %w", err)
	}
	return out.Close()
}

// FromSource builds the binary of each platform by `make build` in repo
// (into bin/<os>-<arch>[-<variant>]/) and returns their index, stamped and
// dated created.
func FromSource(ctx context.Context, repo string, stamp build.Stamp, created time.Time, ps []build.Platform, bin string) (v1.ImageIndex, error) {
	bins := map[build.Platform]string{}
	for _, p := range ps {
		exe, err := build.Binary(ctx, repo, stamp, p, filepath.Join(bin, strings.ReplaceAll(p.String(), "/", "-")))
		if err != nil {
			return nil, err
		}
		bins[p] = exe
	}
	return Build(bins, Meta{Version: stamp.Version, Revision: stamp.Commit, Source: Source, Created: created})
}
