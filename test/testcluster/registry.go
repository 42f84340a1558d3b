package testcluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// registry is an OCI registry in this process, on loopback
// (go-containerregistry's pkg/registry), that a node's containerd pulls
// from over plain HTTP, as it would from a user's registry.
type registry struct {
	host string // 127.0.0.1:port
	srv  *http.Server
	done chan struct{}
}

func startRegistry() (*registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("start the registry: %w", err)
	}
	r := &registry{host: ln.Addr().String(), done: make(chan struct{}),
		srv: &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}}
	go func() {
		defer close(r.done)
		_ = r.srv.Serve(ln)
	}()
	return r, nil
}

// configure writes containerd's hosts.toml for the registry under
// certsDir (the CRI plugin's registry config_path): plain HTTP.
func (r *registry) configure(certsDir string) error {
	dir := filepath.Join(certsDir, r.host)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("configure the registry: %w", err)
	}
	hosts := fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", r.host)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("configure the registry: %w", err)
	}
	return nil
}

// Push pushes img's index as img.Ref under the registry's host and returns
// that reference.
func (r *registry) Push(ctx context.Context, img Image) (string, error) {
	if img.Index == nil {
		return "", fmt.Errorf("push %s: no index to push", img.Ref)
	}
	ref := r.host + "/" + img.Ref
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	if err := remote.WriteIndex(tag, img.Index, remote.WithContext(ctx)); err != nil {
		return "", fmt.Errorf("push %s: %w", ref, err)
	}
	return ref, nil
}

// Close stops the registry.
func (r *registry) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := r.srv.Shutdown(ctx)
	<-r.done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
