package testcluster

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sync/errgroup"
)

// The references of the images BuildImages makes. PauseRef is the sandbox
// image the node's containerd must be given (sandbox_image), as no registry
// can be reached.
const (
	PauseRef   = "registry.k8s.io/pause:3.10-local"
	SidecarRef = "docker.io/library/leader-elector:e2e"
	AppRef     = "docker.io/library/busybox:local"
)

// Image is an image built locally: Tar is a docker-archive tarball holding
// the single image Ref, for `ctr -n k8s.io images import Tar`.
type Image struct{ Ref, Tar string }

// Images are the images a test node runs.
type Images struct {
	// Pause is the pod sandbox image (test/testcluster/pause).
	Pause Image
	// Sidecar is the product image as the Dockerfile's final stage makes
	// it: the static `make build` binary at /leader-elector, user
	// 65532:65532, on what of distroless static:nonroot matters.
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
	g.Go(func() (err error) { imgs.Sidecar, err = buildSidecarImage(ctx, dir, bin); return err })
	g.Go(func() (err error) { imgs.App, err = buildApp(ctx, dir, log); return err })
	if err := g.Wait(); err != nil {
		return Images{}, err
	}
	return imgs, nil
}

// distrolessPATH is the PATH of distroless and busybox images.
const distrolessPATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// nonrootFiles are what of gcr.io/distroless/static-debian12:nonroot matters
// to a static Go binary: the users and groups, a home, /tmp. (No CA
// certificates: the sidecar trusts only the ServiceAccount's CA.)
func nonrootFiles() []layerEntry {
	return []layerEntry{
		{name: "/etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{name: "/etc/group", mode: 0o644, data: []byte("root:x:0:\nnobody:x:65534:\ntty:x:5:\nstaff:x:50:\nnonroot:x:65532:\n")},
		{name: "/etc/nsswitch.conf", mode: 0o644, data: []byte("hosts: files dns\n")},
		{name: "/home/nonroot", mode: fs.ModeDir | 0o700, uid: 65532, gid: 65532},
		{name: "/root", mode: fs.ModeDir | 0o700},
		{name: "/tmp", mode: fs.ModeDir | fs.ModeSticky | 0o777},
	}
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
		Env:        []string{distrolessPATH},
	}, []layerEntry{{name: "/pause", mode: 0o755, data: data}})
}

func buildSidecarImage(ctx context.Context, dir, bin string) (Image, error) {
	cmd := exec.CommandContext(ctx, "make", "--no-print-directory", "build", "BIN="+bin)
	if err := runIn(RepoRoot(), cmd); err != nil {
		return Image{}, fmt.Errorf("build the sidecar image: %w", err)
	}
	data, err := readStatic(filepath.Join(bin, "leader-elector"))
	if err != nil {
		return Image{}, fmt.Errorf("build the sidecar image: %w", err)
	}
	files := append(nonrootFiles(), layerEntry{name: "/leader-elector", mode: 0o755, data: data})
	return writeImage(dir, "sidecar", SidecarRef, v1.Config{
		User:       "65532:65532",
		Entrypoint: []string{"/leader-elector"},
		Env:        []string{distrolessPATH},
		WorkingDir: "/home/nonroot",
	}, files)
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
	files := append(nonrootFiles(), layerEntry{name: "/" + name, mode: 0o755, data: data})
	return writeImage(dir, name, ref, v1.Config{
		User:       "65532:65532",
		Entrypoint: []string{"/" + name},
		Env:        []string{distrolessPATH},
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
	files := append(nonrootFiles(), layerEntry{name: "/bin/busybox", mode: 0o755, data: data})
	for _, applet := range strings.Fields(string(out)) {
		if applet != "busybox" && !strings.Contains(applet, "/") {
			files = append(files, layerEntry{name: "/bin/" + applet, mode: fs.ModeSymlink | 0o777, link: "busybox"})
		}
	}
	return writeImage(dir, "app", AppRef, v1.Config{
		Cmd: []string{"sh"},
		Env: []string{distrolessPATH},
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

// writeImage writes the single-layer image ref of files, with cfg, to the
// docker-archive dir/<base>.tar.
func writeImage(dir, base, ref string, cfg v1.Config, files []layerEntry) (Image, error) {
	tag, err := name.NewTag(ref)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", ref, err)
	}
	layerTar, err := layerOf(files)
	if err != nil {
		return Image{}, fmt.Errorf("image %s: %w", ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	})
	if err != nil {
		return Image{}, fmt.Errorf("image %s: layer: %w", ref, err)
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: runtime.GOARCH,
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       cfg,
	})
	if err != nil {
		return Image{}, fmt.Errorf("image %s: config: %w", ref, err)
	}
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created:   v1.Time{Time: epoch},
		CreatedBy: "test/testcluster.BuildImages",
	}})
	if err != nil {
		return Image{}, fmt.Errorf("image %s: append the layer: %w", ref, err)
	}
	out := filepath.Join(dir, base+".tar")
	if err := tarball.WriteToFile(out, tag, img); err != nil {
		return Image{}, fmt.Errorf("image %s: write %s: %w", ref, out, err)
	}
	return Image{Ref: ref, Tar: out}, nil
}

// layerEntry is one file of a layer. Directories its files need and it does
// not list are made root-owned 0755.
type layerEntry struct {
	name     string      // absolute path in the image
	mode     fs.FileMode // permissions with fs.ModeDir, fs.ModeSymlink or fs.ModeSticky
	uid, gid int
	data     []byte // a regular file's content
	link     string // a symlink's target
}

// layerOf returns the gzipped tar of files, in path order, every time the
// epoch, so the same files give the same digest.
func layerOf(files []layerEntry) ([]byte, error) {
	byName := map[string]layerEntry{}
	for _, f := range files {
		if _, dup := byName[f.name]; dup {
			return nil, fmt.Errorf("layer: %s listed twice", f.name)
		}
		byName[f.name] = f
	}
	for _, f := range files {
		for d := path.Dir(f.name); d != "/"; d = path.Dir(d) {
			if _, ok := byName[d]; !ok {
				byName[d] = layerEntry{name: d, mode: fs.ModeDir | 0o755}
			}
		}
	}
	names := slices.Sorted(maps.Keys(byName))

	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	tw := tar.NewWriter(zw)
	for _, n := range names {
		f := byName[n]
		h := &tar.Header{
			Name:    strings.TrimPrefix(n, "/"),
			Mode:    int64(f.mode.Perm()),
			Uid:     f.uid,
			Gid:     f.gid,
			ModTime: epoch,
		}
		if f.mode&fs.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
		switch {
		case f.mode.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
		case f.mode&fs.ModeSymlink != 0:
			h.Typeflag, h.Linkname = tar.TypeSymlink, f.link
		case f.mode.IsRegular():
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		default:
			return nil, fmt.Errorf("layer: %s: unsupported mode %v", n, f.mode)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("layer: %s: %w", n, err)
		}
		if _, err := tw.Write(f.data); err != nil {
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
