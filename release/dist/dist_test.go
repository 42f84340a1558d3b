package dist

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"debug/macho"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"

	"github.com/leader-elector/leader-elector/release/build"
)

// TestReleaseIsReproducibleAndComplete makes the release twice for a Linux
// and a macOS platform (the test's share of the seven `make release`
// builds) and checks that every file is byte for byte the same, that
// SHA256SUMS and the krew manifest name every file by its checksum, that
// each binary is for its platform, that the host's runs with its stamp,
// and that each SBOM lists what the binary links.
func TestReleaseIsReproducibleAndComplete(t *testing.T) {
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	host := build.Platform{OS: "linux", Arch: "amd64"}
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		host = build.Platform{OS: runtime.GOOS, Arch: runtime.GOARCH}
	}
	opts := Options{
		Repo:        repo,
		Stamp:       build.Stamp{Version: "v0.0.0-test", Commit: "0123abc", Date: "2026-12-07T08:00:00Z"},
		Created:     time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC),
		Platforms:   []build.Platform{host, {OS: "darwin", Arch: "arm64"}},
		DownloadURL: "https://example.invalid/%s",
	}
	var rels []*Release
	for _, dir := range []string{t.TempDir(), t.TempDir()} {
		opts.Out = filepath.Join(dir, "release")
		r, err := Make(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		rels = append(rels, r)
	}
	a, b := rels[0], rels[1]
	files, err := os.ReadDir(a.Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 8 { // 2 binaries, 2 SBOMs, 2 archives, SHA256SUMS, leader.yaml
		t.Errorf("%d files, want 8: %v", len(files), files)
	}
	for _, f := range files {
		x, _ := os.ReadFile(filepath.Join(a.Dir, f.Name()))
		y, err := os.ReadFile(filepath.Join(b.Dir, f.Name()))
		if err != nil || !bytes.Equal(x, y) {
			t.Errorf("%s differs between two releases of one commit (%v)", f.Name(), err)
		}
	}

	// SHA256SUMS names every other file by its checksum.
	sums, err := os.ReadFile(filepath.Join(a.Dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		sum, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q is not `sum  name`", sc.Text())
		}
		listed[name] = sum
	}
	for _, f := range files {
		if f.Name() == "SHA256SUMS" {
			continue
		}
		data, _ := os.ReadFile(filepath.Join(a.Dir, f.Name()))
		s := sha256.Sum256(data)
		if listed[f.Name()] != hex.EncodeToString(s[:]) {
			t.Errorf("SHA256SUMS has %q for %s, its checksum is %x", listed[f.Name()], f.Name(), s)
		}
	}
	krew, err := os.ReadFile(filepath.Join(a.Dir, "leader.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, archive := range a.Archives {
		want := "uri: https://example.invalid/v0.0.0-test/" + archive + "\n    sha256: " + listed[archive]
		if !bytes.Contains(krew, []byte(want)) {
			t.Errorf("the krew manifest lacks %q:\n%s", want, krew)
		}
	}

	// Each binary is for its platform; the host's runs with its stamp.
	hostBin := filepath.Join(a.Dir, "leader-elector-v0.0.0-test-"+host.OS+"-"+host.Arch)
	if f, err := elf.Open(hostBin); err == nil {
		if f.Machine != elf.EM_X86_64 && host.Arch == "amd64" {
			t.Errorf("%s: ELF machine %s", hostBin, f.Machine)
		}
		f.Close()
	} else if host.OS == "linux" {
		t.Errorf("%s: %v", hostBin, err)
	}
	out, err := exec.Command(hostBin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "leader-elector v0.0.0-test commit=0123abc date=2026-12-07T08:00:00Z go=") {
		t.Errorf("--version = %q (%v)", out, err)
	}
	mf, err := macho.Open(filepath.Join(a.Dir, "leader-elector-v0.0.0-test-darwin-arm64"))
	if err != nil {
		t.Fatalf("the darwin/arm64 binary: %v", err)
	}
	if mf.Cpu != macho.CpuArm64 {
		t.Errorf("the darwin/arm64 binary is for %s", mf.Cpu)
	}
	mf.Close()

	// The SBOM lists the modules the binary links, with their versions.
	f, err := os.Open(hostBin + ".cdx.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var bom cdx.BOM
	if err := cdx.NewBOMDecoder(f, cdx.BOMFileFormatJSON).Decode(&bom); err != nil {
		t.Fatal(err)
	}
	if bom.Metadata == nil || bom.Metadata.Component == nil || bom.Metadata.Component.Version != "v0.0.0-test" {
		t.Fatalf("SBOM metadata = %+v", bom.Metadata)
	}
	found := map[string]string{}
	for _, c := range *bom.Components {
		found[c.Name] = c.Version
	}
	goMod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, mod := range []string{"k8s.io/client-go", "github.com/fsnotify/fsnotify", "github.com/caarlos0/env/v11"} {
		v, ok := found[mod]
		if !ok || !bytes.Contains(goMod, []byte(mod+" "+v)) {
			t.Errorf("SBOM lists %s at %q (listed: %v), want go.mod's version", mod, v, ok)
		}
	}
}
