package dist

import (
	"crypto/sha256"
	"debug/buildinfo"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// SBOM writes to w the CycloneDX (JSON, spec 1.6) bill of materials of the
// Go binary file: the modules it links, as its own build information lists
// them (what is in the binary, not what go.mod allows), with the binary's
// SHA-256, dated created. The serial number follows from the binary's
// hash, so the same binary gives the same document.
func SBOM(w io.Writer, file, version string, created time.Time) error {
	info, err := buildinfo.ReadFile(file)
	if err != nil {
		return fmt.Errorf("sbom of %s: read its build information: %w", file, err)
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("sbom of %s: %w", file, err)
	}
	sum := sha256.Sum256(data)
	bom := cdx.NewBOM()
	bom.SerialNumber = "urn:uuid:" + uuidOf(sum[:])
	var goos, goarch string
	for _, s := range info.Settings {
		switch s.Key {
		case "GOOS":
			goos = s.Value
		case "GOARCH":
			goarch = s.Value
		}
	}
	main := cdx.Component{
		BOMRef:     purl(info.Main.Path, version),
		Type:       cdx.ComponentTypeApplication,
		Name:       "leader-elector",
		Version:    version,
		PackageURL: purl(info.Main.Path, version) + fmt.Sprintf("?goos=%s&goarch=%s", goos, goarch),
		Hashes:     &[]cdx.Hash{{Algorithm: cdx.HashAlgoSHA256, Value: hex.EncodeToString(sum[:])}},
		Licenses:   &cdx.Licenses{{License: &cdx.License{ID: "Apache-2.0"}}},
	}
	bom.Metadata = &cdx.Metadata{
		Timestamp: created.UTC().Format(time.RFC3339),
		Component: &main,
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeLibrary, Name: "cyclonedx-go", Group: "github.com/CycloneDX",
		}}},
		Properties: &[]cdx.Property{{Name: "go.version", Value: info.GoVersion}},
	}
	var comps []cdx.Component
	var deps []string
	for _, m := range info.Deps {
		if m.Replace != nil {
			m = m.Replace
		}
		ref := purl(m.Path, m.Version)
		c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeLibrary, Name: m.Path, Version: m.Version, PackageURL: ref}
		if m.Sum != "" {
			c.Properties = &[]cdx.Property{{Name: "go.module.sum", Value: m.Sum}}
		}
		comps = append(comps, c)
		deps = append(deps, ref)
	}
	bom.Components = &comps
	bom.Dependencies = &[]cdx.Dependency{{Ref: main.BOMRef, Dependencies: &deps}}
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	if err := enc.EncodeVersion(bom, cdx.SpecVersion1_6); err != nil {
		return fmt.Errorf("sbom of %s: %w", file, err)
	}
	return nil
}

// purl is a Go module's package URL.
func purl(path, version string) string {
	return "pkg:golang/" + strings.ToLower(path) + "@" + version
}

// uuidOf is a version-4-shaped UUID made of the first 16 bytes of sum.
func uuidOf(sum []byte) string {
	b := make([]byte, 16)
	copy(b, sum)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
