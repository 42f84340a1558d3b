package image

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"

	"github.com/leader-elector/leader-elector/release/build"
)

var (
	amd64 = build.Platform{OS: "linux", Arch: "amd64"}
	arm64 = build.Platform{OS: "linux", Arch: "arm64"}
	meta  = Meta{Version: "v0.1.0", Revision: "0123abc", Source: Source, Created: time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)}
)

// fakeBinaries writes one file per platform; Build does not run them.
func fakeBinaries(t *testing.T) map[build.Platform]string {
	dir := t.TempDir()
	bins := map[build.Platform]string{}
	for _, p := range []build.Platform{amd64, arm64} {
		f := filepath.Join(dir, p.Arch)
		if err := os.WriteFile(f, []byte("binary for "+p.String()), 0o755); err != nil {
			t.Fatal(err)
		}
		bins[p] = f
	}
	return bins
}

// TestBuildIsReproducible: two builds of the same binaries give one digest,
// also after a round trip through the layout and the archive.
func TestBuildIsReproducible(t *testing.T) {
	bins := fakeBinaries(t)
	ref, _ := name.NewTag("ghcr.io/leader-elector/leader-elector:v0.1.0")
	var digests, archives []string
	for range 2 {
		idx, err := Build(bins, meta)
		if err != nil {
			t.Fatal(err)
		}
		d, err := idx.Digest()
		if err != nil {
			t.Fatal(err)
		}
		digests = append(digests, d.String())
		dir := t.TempDir()
		if err := WriteLayout(filepath.Join(dir, "oci"), ref, idx); err != nil {
			t.Fatal(err)
		}
		archive := filepath.Join(dir, "image.oci.tar")
		if err := WriteArchive(archive, filepath.Join(dir, "oci"), meta.Created); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(archive)
		if err != nil {
			t.Fatal(err)
		}
		archives = append(archives, string(data))
		// What `crane push DIR --index` reads back: the same index.
		p, err := layout.FromPath(filepath.Join(dir, "oci"))
		if err != nil {
			t.Fatal(err)
		}
		outer, err := p.ImageIndex()
		if err != nil {
			t.Fatal(err)
		}
		inner, err := outer.ImageIndex(d)
		if err != nil {
			t.Fatalf("the layout does not hold the index %s: %v", d, err)
		}
		if got, _ := inner.Digest(); got != d {
			t.Errorf("layout index digest = %s, want %s", got, d)
		}
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds gave %s and %s", digests[0], digests[1])
	}
	if archives[0] != archives[1] {
		t.Errorf("two archives of the same index differ")
	}
}

// TestIndexHasEachPlatformAsDistrolessNonroot checks what a runtime reads:
// the platforms, the user, the entrypoint, the files, the annotations.
func TestIndexHasEachPlatformAsDistrolessNonroot(t *testing.T) {
	idx, err := Build(fakeBinaries(t), meta)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if got := im.Annotations["org.opencontainers.image.revision"]; got != "0123abc" {
		t.Errorf("index revision annotation = %q", got)
	}
	if len(im.Manifests) != 2 {
		t.Fatalf("%d manifests, want 2", len(im.Manifests))
	}
	for i, want := range []build.Platform{amd64, arm64} {
		desc := im.Manifests[i]
		if desc.Platform == nil || desc.Platform.OS != want.OS || desc.Platform.Architecture != want.Arch {
			t.Errorf("manifest %d platform = %+v, want %s", i, desc.Platform, want)
			continue
		}
		img, err := idx.Image(desc.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cf.Architecture != want.Arch || cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/leader-elector" {
			t.Errorf("%s config = arch %s user %q entrypoint %q", want, cf.Architecture, cf.Config.User, cf.Config.Entrypoint)
		}
		for k, v := range map[string]string{"org.opencontainers.image.version": "v0.1.0", "org.opencontainers.image.licenses": "Apache-2.0", "org.opencontainers.image.source": Source} {
			if cf.Config.Labels[k] != v {
				t.Errorf("%s label %s = %q, want %q", want, k, cf.Config.Labels[k], v)
			}
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers (%v), want 1", want, len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		files := map[string]*tar.Header{}
		contents := map[string]string{}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			files[h.Name] = h
			var b bytes.Buffer
			io.Copy(&b, tr)
			contents[h.Name] = b.String()
			if !h.ModTime.Equal(meta.Created) {
				t.Errorf("%s: %s dated %s, want the commit's time %s", want, h.Name, h.ModTime, meta.Created)
			}
		}
		rc.Close()
		if h := files["leader-elector"]; h == nil || h.Mode != 0o755 || contents["leader-elector"] != "binary for "+want.String() {
			t.Errorf("%s: /leader-elector = %+v %q", want, h, contents["leader-elector"])
		}
		if h := files["home/nonroot/"]; h == nil || h.Uid != 65532 {
			t.Errorf("%s: /home/nonroot = %+v, want owned by 65532", want, h)
		}
		if h := files["tmp/"]; h == nil || h.Mode != 0o1777 {
			t.Errorf("%s: /tmp = %+v, want 1777", want, h)
		}
	}
}

// TestLayoutNamesTheImage: index.json names the image as containerd's
// import and the OCI spec read it.
func TestLayoutNamesTheImage(t *testing.T) {
	idx, err := Build(fakeBinaries(t), meta)
	if err != nil {
		t.Fatal(err)
	}
	ref, _ := name.NewTag("registry.example/team/leader-elector:v0.1.0")
	dir := filepath.Join(t.TempDir(), "oci")
	if err := WriteLayout(dir, ref, idx); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var top struct {
		Manifests []struct {
			MediaType   string            `json:"mediaType"`
			Annotations map[string]string `json:"annotations"`
		} `json:"manifests"`
	}
	if err := json.Unmarshal(data, &top); err != nil {
		t.Fatal(err)
	}
	if len(top.Manifests) != 1 {
		t.Fatalf("index.json has %d entries, want 1:\n%s", len(top.Manifests), data)
	}
	a := top.Manifests[0].Annotations
	if a["io.containerd.image.name"] != "registry.example/team/leader-elector:v0.1.0" || a["org.opencontainers.image.ref.name"] != "v0.1.0" {
		t.Errorf("index.json annotations = %v", a)
	}
}

// TestBuildRefusesWhatCannotRun: no platform, or a platform that is not
// linux, is one clear error.
func TestBuildRefusesWhatCannotRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		bins map[build.Platform]string
		want string
	}{
		{"none", nil, "no platform given"},
		{"darwin", map[build.Platform]string{{OS: "darwin", Arch: "arm64"}: os.Args[0]}, "darwin/arm64: images are for linux only"},
		{"missing binary", map[build.Platform]string{amd64: filepath.Join(t.TempDir(), "nope")}, "linux/amd64"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Build(tc.bins, meta)
			if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
				t.Errorf("Build = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
