package testcluster

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/leader-elector/leader-elector/release/build"
	"github.com/leader-elector/leader-elector/release/image"
	"golang.org/x/sync/errgroup"
)

// The references of the images BuildImages makes. PauseRef is the sandbox
// image the node's containerd must be given (sandbox_image), as no registry
// can be reached.
const (
	PauseRef = "registry.k8s.io/pause:3.10-local"
	// SidecarRef is the release image's repository and tag in a node's
	// registry: a node's Images.Sidecar.Ref is this under its registry's
	// host.
	SidecarRef = "leader-elector/leader-elector:v0.0.0-e2e"
	AppRef     = "docker.io/library/busybox:local"
)

// Image is an image built locally: Tar is a docker-archive tarball holding
// the single image Ref, for `ctr -n k8s.io images import Tar`; or Index, a
// multi-platform index that a node pushes to its registry, from which its
// containerd pulls it by Ref (then the registry's reference).
type Image struct {
	Ref, Tar string
	Index    v1.ImageIndex
}

// Images are the images a test node runs.
type Images struct {
	// Pause is the pod sandbox image (test/testcluster/pause).
	Pause Image
	// Sidecar is the release image as `make image` makes it
	// (release/image): an index for linux/amd64 and linux/arm64 of the
	// static `make build` binary at /leader-elector, user 65532:65532, on
	// what of distroless static:nonroot matters. A node pushes it to its
	// registry, and pods pull it by tag.
	Sidecar Image
	// App is busybox from Debian's busybox-static, with a link for every
	// applet in /bin (sh, httpd, sleep, wget, [ ...).
	App Image
}

// BuildImages builds the three images into tarballs under dir (and their
// binaries under dir/bin). The sidecar is built from the working tree on
// every call, by the same `make build` as the release. Every layer is
// reproducible: files owned by root unless stated, directories 0755, /tmp
// 1777, every time the Unix epoch. Progress lines go to log (os.Stderr when
// nil).
func BuildImages(ctx context.Context, dir string, log io.Writer) (Images, error) {
	if log == nil {
		log = os.Stderr
	}
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return Images{}, fmt.Errorf("build images: %w", err)
	}
	var imgs Images
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) { imgs.Pause, err = buildPause(ctx, dir, bin); return err })
	g.Go(func() (err error) { imgs.Sidecar, err = buildSidecarImage(ctx, bin); return err })
	g.Go(func() (err error) { imgs.App, err = buildApp(ctx, dir, log); return err })
	if err := g.Wait(); err != nil {
		return Images{}, err
	}
	return imgs, nil
}

func buildPause(ctx context.Context, dir, bin string) (Image, error) {
	exe := filepath.Join(bin, "pause")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", exe, "./testcluster/pause")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := runIn(TestRoot(), cmd); err != nil {
		return Image{}, fmt.Errorf("build the pause image: %w", err)
	}
	data, err := readStatic(exe)
	if err != nil {
		return Image{}, fmt.Errorf("build the pause image: %w", err)
	}
	// As Kubernetes' pause image: FROM scratch, /pause, USER 65535:65535.
	return writeImage(dir, "pause", PauseRef, v1.Config{
		User:       "65535:65535",
		Entrypoint: []string{"/pause"},
		Env:        []string{image.PATH},
	}, []image.File{{Name: "/pause", Mode: 0o755, Data: data}})
}

// SidecarStamp is what the tests' release image is stamped with.
var SidecarStamp = build.Stamp{Version: "v0.0.0-e2e", Commit: "e2e", Date: "1970-01-01T00:00:00Z"}

func buildSidecarImage(ctx context.Context, bin string) (Image, error) {
	idx, err := image.FromSource(ctx, RepoRoot(), SidecarStamp, epoch,
		[]build.Platform{{OS: "linux", Arch: "amd64"}, {OS: "linux", Arch: "arm64"}}, filepath.Join(bin, "sidecar"))
	if err != nil {
		return Image{}, fmt.Errorf("build the sidecar image: %w", err)
	}
	return Image{Ref: SidecarRef, Index: idx}, nil
}

// BuildStaticImage builds the Go command pkg of the test module (such as
// "./bench/clientgo-elector") as a static binary into an image like the
// sidecar's: /<name> on what of distroless static:nonroot matters, user
// 65532:65532, tagged ref, written under dir.
func BuildStaticImage(ctx context.Context, dir, name, ref, pkg string) (Image, error) {
	exe := filepath.Join(dir, "bin", name)
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", "-s -w", "-o", exe, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if err := runIn(TestRoot(), cmd); err != nil {
		return Image{}, fmt.Errorf("build the %s image: %w", name, err)
	}
	data, err := readStatic(exe)
	if err != nil {
		return Image{}, fmt.Errorf("build the %s image: %w", name, err)
	}
	files := append(image.NonrootFiles(), image.File{Name: "/" + name, Mode: 0o755, Data: data})
	return writeImage(dir, name, ref, v1.Config{
		User:       "65532:65532",
		Entrypoint: []string{"/" + name},
		Env:        []string{image.PATH},
		WorkingDir: "/home/nonroot",
	}, files)
}

func buildApp(ctx context.Context, dir string, log io.Writer) (Image, error) {
	root, err := DebianPackages(log, "busybox-static")
	if err != nil {
		return Image{}, fmt.Errorf("build the app image: %w", err)
	}
	exe := filepath.Join(root, "bin", "busybox")
	data, err := readStatic(exe)
	if err != nil {
		return Image{}, fmt.Errorf("build the app image: %w", err)
	}
	out, err := exec.CommandContext(ctx, exe, "--list").Output()
	if err != nil {
		return Image{}, fmt.Errorf("build the app image: list the busybox applets: %w", err)
	}
	files := append(image.NonrootFiles(), image.File{Name: "/bin/busybox", Mode: 0o755, Data: data})
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && !strings.Contains(applet, "/") {
			files = append(files, image.File{Name: "/bin/" + applet, Mode: fs.ModeSymlink | 0o777, Link: "busybox"})
		}
	}
	return writeImage(dir, "app", AppRef, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{image.PATH},
	}, files)
}

// runIn runs cmd in dir, with its output in the error.
func runIn(dir string, cmd *exec.Cmd) error {
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// readStatic reads an executable that must be a static ELF binary: the
// images have no libc and no dynamic loader.
func readStatic(file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if err := staticELF(data); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return data, nil
}

// staticELF returns an error unless data is an ELF executable with neither
// a program interpreter nor a needed shared library.
func staticELF(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not an ELF binary: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return errors.New("dynamically linked (has a PT_INTERP program header)")
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("read the needed libraries: %w", err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("dynamically linked (needs %s)", strings.Join(libs, " "))
	}
	return nil
}

// epoch is the time of every file and of the image: layers are reproducible.
var epoch = time.Unix(0, 0).UTC()

// writeImage writes the single-layer image ref of files, with cfg, for this
// machine's architecture, to the docker-archive dir/<base>.tar.
func writeImage(dir, base, ref string, cfg v1.Config, files []image.File) (Image, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", ref, err)
	}
	img, err := image.Single(build.Platform{OS: "linux", Arch: runtime.GOARCH}, cfg, files, epoch, nil, "test/testcluster.BuildImages")
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", ref, err)
	}
	out := filepath.Join(dir, base+".tar")
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return Image{}, fmt.Errorf("image %s: write %s: %w", ref, out, err)
	}
	return Image{Ref: ref, Tar: out}, nil
}
