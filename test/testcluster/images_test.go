package testcluster

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// wantFile is a file an image must hold.
type wantFile struct {
	mode     fs.FileMode // with the type bits, as tar.Header.FileInfo gives them
	uid, gid int
	link     string // a symlink's target
	static   bool   // a static ELF executable
}

// TestBuildImages builds the three images and reads each tarball back as
// `ctr images import` would: the image under its reference, one layer, the
// config, and every file's type, mode, owner and time.
func TestBuildImages(t *testing.T) {
	dir := t.TempDir()
	imgs, err := BuildImages(t.Context(), dir, testWriter{t})
	if err != nil {
		t.Fatal(err)
	}
	root := wantFile{mode: fs.ModeDir | 0o755}
	nonroot := map[string]wantFile{
		"etc":               {mode: fs.ModeDir | 0o755},
		"etc/passwd":        {mode: 0o644},
		"etc/group":         {mode: 0o644},
		"etc/nsswitch.conf": {mode: 0o644},
		"home":              root,
		"home/nonroot":      {mode: fs.ModeDir | 0o700, uid: 65532, gid: 65532},
		"root":              {mode: fs.ModeDir | 0o700},
		"tmp":               {mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
	with := func(base map[string]wantFile, more map[string]wantFile) map[string]wantFile {
		m := map[string]wantFile{}
		for k, v := range base {
			m[k] = v
		}
		for k, v := range more {
			m[k] = v
		}
		return m
	}
	link := wantFile{mode: fs.ModeSymlink | 0o777, link: "busybox"}
	tests := []struct {
		name       string
		img        Image
		ref        string
		user       string
		entrypoint []string
		cmd        []string
		// files must be present as given; exact: no other file either.
		files map[string]wantFile
		exact bool
		// users must be in /etc/passwd.
		users []string
	}{
		{
			name: "pause", img: imgs.Pause, ref: PauseRef,
			user: "65535:65535", entrypoint: []string{"/pause"},
			files: map[string]wantFile{"pause": {mode: 0o755, static: true}},
			exact: true,
		},
		{
			name: "sidecar", img: imgs.Sidecar, ref: SidecarRef,
			user: "65532:65532", entrypoint: []string{"/leader-elector"},
			files: with(nonroot, map[string]wantFile{"leader-elector": {mode: 0o755, static: true}}),
			exact: true,
			users: []string{"root:x:0:0:", "nonroot:x:65532:65532:"},
		},
		{
			name: "app", img: imgs.App, ref: AppRef,
			cmd: []string{"sh"},
			files: with(nonroot, map[string]wantFile{
				"bin":         root,
				"bin/busybox": {mode: 0o755, static: true},
				"bin/sh":      link, "bin/httpd": link, "bin/sleep": link, "bin/cat": link,
				"bin/echo": link, "bin/wget": link, "bin/[": link, "bin/test": link,
				"bin/rm": link, "bin/touch": link, "bin/kill": link, "bin/ls": link,
			}),
			users: []string{"root:x:0:0:", "nonroot:x:65532:65532:"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.img.Ref != tc.ref {
				t.Errorf("Ref = %q, want %q", tc.img.Ref, tc.ref)
			}
			img := loadImage(t, tc.img)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != runtime.GOARCH {
				t.Errorf("platform = %s/%s, want linux/%s", cf.OS, cf.Architecture, runtime.GOARCH)
			}
			if !cf.Created.Time.Equal(time.Unix(0, 0)) {
				t.Errorf("created = %v, want the epoch", cf.Created.Time)
			}
			if cf.Config.User != tc.user {
				t.Errorf("user = %q, want %q", cf.Config.User, tc.user)
			}
			if !slices.Equal(cf.Config.Entrypoint, tc.entrypoint) {
				t.Errorf("entrypoint = %q, want %q", cf.Config.Entrypoint, tc.entrypoint)
			}
			if !slices.Equal(cf.Config.Cmd, tc.cmd) {
				t.Errorf("cmd = %q, want %q", cf.Config.Cmd, tc.cmd)
			}
			layers, err := img.Layers()
			if err != nil {
				t.Fatal(err)
			}
			if len(layers) != 1 {
				t.Fatalf("layers = %d, want 1", len(layers))
			}
			hdrs, contents := readLayer(t, layers[0])

			for path, want := range tc.files {
				h, ok := hdrs[path]
				if !ok {
					t.Errorf("%s missing", path)
					continue
				}
				if got := h.FileInfo().Mode(); got != want.mode {
					t.Errorf("%s: mode %v, want %v", path, got, want.mode)
				}
				if h.Uid != want.uid || h.Gid != want.gid {
					t.Errorf("%s: owner %d:%d, want %d:%d", path, h.Uid, h.Gid, want.uid, want.gid)
				}
				if h.Linkname != want.link {
					t.Errorf("%s: link to %q, want %q", path, h.Linkname, want.link)
				}
				if want.static {
					if err := noInterpreter(contents[path]); err != nil {
						t.Errorf("%s: %v", path, err)
					}
				}
			}
			for path, h := range hdrs {
				if _, listed := tc.files[path]; !listed {
					if tc.exact {
						t.Errorf("unexpected %s in the layer", path)
					}
					// Unlisted entries are root's directories or links.
					if h.Uid != 0 || h.Gid != 0 || (h.Typeflag != tar.TypeSymlink && h.FileInfo().Mode() != root.mode) {
						t.Errorf("%s: %v %d:%d, want a root-owned directory (0755) or a link", path, h.FileInfo().Mode(), h.Uid, h.Gid)
					}
				}
				if !h.ModTime.Equal(time.Unix(0, 0)) {
					t.Errorf("%s: time %v, want the epoch", path, h.ModTime)
				}
			}
			passwd := string(contents["etc/passwd"])
			for _, u := range tc.users {
				if !strings.Contains(passwd, "\n"+u) && !strings.HasPrefix(passwd, u) {
					t.Errorf("/etc/passwd lacks %q:\n%s", u, passwd)
				}
			}
		})
	}
}

// loadImage reads img back as the node gets it: a docker-archive as `ctr
// images import` reads it (the image under its reference), an index as
// containerd pulls it (the manifest of this machine's platform, from an
// index of linux/amd64 and linux/arm64).
func loadImage(t *testing.T, img Image) v1.Image {
	t.Helper()
	if img.Index != nil {
		im, err := img.Index.IndexManifest()
		if err != nil {
			t.Fatal(err)
		}
		var platforms []string
		var mine *v1.Descriptor
		for i, d := range im.Manifests {
			platforms = append(platforms, d.Platform.OS+"/"+d.Platform.Architecture)
			if d.Platform.OS == "linux" && d.Platform.Architecture == runtime.GOARCH {
				mine = &im.Manifests[i]
			}
		}
		if !slices.Equal(platforms, []string{"linux/amd64", "linux/arm64"}) || mine == nil {
			t.Fatalf("index platforms = %v, want linux/amd64 and linux/arm64", platforms)
		}
		i, err := img.Index.Image(mine.Digest)
		if err != nil {
			t.Fatal(err)
		}
		return i
	}
	tag, err := name.NewTag(img.Ref)
	if err != nil {
		t.Fatal(err)
	}
	// With a tag, ImageFromPath fails unless the archive's manifest.json
	// lists it in RepoTags.
	i, err := tarball.ImageFromPath(img.Tar, &tag)
	if err != nil {
		t.Fatalf("read %s as %s: %v", img.Tar, img.Ref, err)
	}
	return i
}

// readLayer returns the layer's tar headers and regular files' contents by
// path (without a leading "/" or trailing "/").
func readLayer(t *testing.T, l v1.Layer) (map[string]*tar.Header, map[string][]byte) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	hdrs, contents := map[string]*tar.Header{}, map[string][]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(h.Name, "/") {
			t.Errorf("%s: absolute path in the layer", h.Name)
		}
		p := strings.TrimSuffix(h.Name, "/")
		if _, dup := hdrs[p]; dup {
			t.Errorf("%s twice in the layer", p)
		}
		hdrs[p] = h
		if h.Typeflag == tar.TypeReg {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			contents[p] = b
		}
	}
	return hdrs, contents
}

// noInterpreter is the test's own check of a static binary: an ELF file
// with no PT_INTERP program header, so it needs no dynamic loader.
func noInterpreter(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("has PT_INTERP: dynamically linked")
		}
	}
	return nil
}

// TestStaticELFRejectsWhatCannotRunInTheImages checks the guard BuildImages
// puts on every binary: the images have no libc.
func TestStaticELFRejectsWhatCannotRunInTheImages(t *testing.T) {
	dynamic, err := os.ReadFile("/bin/sh") // dynamically linked on Debian and Ubuntu
	if err != nil {
		t.Fatal(err)
	}
	bb, err := DebianPackages(testWriter{t}, "busybox-static")
	if err != nil {
		t.Fatal(err)
	}
	static, err := os.ReadFile(bb + "/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		data    []byte
		wantErr string
	}{
		{"static busybox", static, ""},
		{"dynamic /bin/sh", dynamic, "dynamically linked"},
		{"not ELF", []byte("#!/bin/sh\necho hi\n"), "not an ELF binary"},
	}
	for _, tc := range tests {
		err := staticELF(tc.data)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v, want nil", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.wantErr)
		}
	}
}
