package testcluster

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
)

// Main starts one control plane for a test package, runs its tests, and
// stops the control plane, also when the run is interrupted with SIGINT or
// SIGTERM. Use it from TestMain: os.Exit(testcluster.Main(m, &cp)).
func Main(m *testing.M, cp **ControlPlane) int {
	return main(m, cp, nil)
}

// MainWithNode is Main with a Node on the control plane (StartNode), for
// tests that run real pods. The node is torn down before the control plane.
func MainWithNode(m *testing.M, cp **ControlPlane, node **Node) int {
	return main(m, cp, node)
}

func main(m *testing.M, cp **ControlPlane, node **Node) int {
	c, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testcluster:", err)
		return 1
	}
	*cp = c
	var n *Node
	stop := func() error {
		var errs []error
		if n != nil {
			errs = append(errs, n.Stop())
		}
		return errors.Join(append(errs, c.Stop())...)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		fmt.Fprintf(os.Stderr, "testcluster: %s: stopping the control plane\n", sig)
		_ = stop()
		os.Exit(1)
	}()
	if node != nil {
		if n, err = c.StartNode(context.Background(), NodeOptions{}); err != nil {
			fmt.Fprintln(os.Stderr, "testcluster:", err)
			_ = c.Stop()
			return 1
		}
		*node = n
	}
	code := m.Run()
	signal.Stop(sigs)
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testcluster:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Namespace creates a namespace for one test and deletes it at its end.
func Namespace(t testing.TB, cp *ControlPlane) string {
	t.Helper()
	name := strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	if len(name) > 40 {
		name = name[:40]
	}
	ns, err := cp.CreateNamespace(t.Context(), strings.Trim(name, "-"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.DeleteNamespace(context.Background(), ns); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// testWriter sends progress lines to the test log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
