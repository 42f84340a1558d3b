package pods

import (
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/leader-elector/leader-elector/release/image"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// TestReleaseArchiveImportsWithCtr: the OCI archive that `make image`
// writes (the layout of the two-platform index, tarred) is what `ctr
// images import` takes, under the name the layout gives it.
func TestReleaseArchiveImportsWithCtr(t *testing.T) {
	ref, err := name.NewTag("ghcr.io/leader-elector/leader-elector:v0.0.0-archive")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	layout := filepath.Join(dir, "oci")
	if err := image.WriteLayout(layout, ref, node.Images.Sidecar.Index); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "leader-elector.oci.tar")
	if err := image.WriteArchive(archive, layout, time.Unix(0, 0)); err != nil {
		t.Fatal(err)
	}
	if err := node.ImportImage(t.Context(), testcluster.Image{Ref: ref.Name(), Tar: archive}); err != nil {
		t.Fatalf("ctr images import of the release archive: %v", err)
	}
	names, err := node.ImageNames(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, ref.Name()) {
		t.Errorf("after the import the node has %v, want %s among them", names, ref.Name())
	}
}
