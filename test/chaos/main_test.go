package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

var (
	cp     *testcluster.ControlPlane
	binary string
)

func TestMain(m *testing.M) {
	dir, err := testcluster.TempDir("chaos-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		// The sidecars run as an unprivileged user, who must reach the binary.
		if err := os.Chmod(dir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// CHAOS_BINARY runs the suite against another build, such as an
		// older commit's, to see which faults it fails.
		if binary = os.Getenv("CHAOS_BINARY"); binary != "" {
			fmt.Fprintf(os.Stderr, "chaos: sidecar binary from CHAOS_BINARY=%s\n", binary)
		} else if binary, err = testcluster.BuildSidecar(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		binary, _ = filepath.Abs(binary)
		return testcluster.Main(m, &cp)
	}()
	os.Exit(code)
}
