package pods

import (
	"io"
	"log"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	cranecmd "github.com/google/go-containerregistry/cmd/crane/cmd"
	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/leader-elector/leader-elector/release/image"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// TestReleaseArchiveImportsWithCtr: the OCI archive that `make image`
// writes (the layout of the two-platform index, tarred) is what `ctr
// images import` takes, under the name the layout gives it; the layout is
// what `crane push DIR REF` (crane's own command) pushes, as the
// same index.
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

	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	dst := strings.TrimPrefix(reg.URL, "http://") + "/team/leader-elector:v0.0.0-archive"
	push := cranecmd.NewCmdPush(&[]crane.Option{crane.Insecure})
	push.SetArgs([]string{layout, dst})
	push.SetOut(io.Discard)
	if err := push.Execute(); err != nil {
		t.Fatalf("crane push %s %s: %v", layout, dst, err)
	}
	want, err := node.Images.Sidecar.Index.Digest()
	if err != nil {
		t.Fatal(err)
	}
	got, err := crane.Digest(dst, crane.Insecure)
	if err != nil || got != want.String() {
		t.Errorf("the registry serves %s as %s (%v), want the index %s", dst, got, err, want)
	}
}
