// Package testcluster runs a real Kubernetes control plane (etcd,
// kube-apiserver and, on demand, kube-controller-manager, built from their
// official Go modules by hack/controlplane) on loopback for tests and the
// demo, and provides the fixtures the end-to-end tests need: namespaces, the
// manifests of deploy/, ServiceAccount kubeconfigs, pods standing for
// replicas, and sidecar processes.
//
// Everything it starts is stopped by the PIDs it started, and every directory
// it makes is removed, also when a test fails or the process is interrupted:
// child processes get SIGKILL when the test process dies, and directories
// left by a killed run are removed by the next one.
package testcluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Options configure a control plane.
type Options struct {
	// Log receives progress lines; os.Stderr when nil.
	Log io.Writer
}

// ControlPlane is a running etcd and kube-apiserver.
type ControlPlane struct {
	// Dir holds the data, certificates and logs; removed by Stop.
	Dir string
	// URL is the API server's https URL on loopback.
	URL string
	// CAData verifies the API server's certificate.
	CAData []byte
	// Admin is a client with system:masters rights, for the test itself.
	Admin       kubernetes.Interface
	AdminConfig *rest.Config
	// Bin is the directory with the control plane binaries.
	Bin string

	log        io.Writer
	etcdURL    string
	etcdPeer   string
	apiPort    int
	adminToken string

	mu    sync.Mutex
	procs map[string]*Process
	// controllers are those of the running kube-controller-manager.
	controllers string
}

// RepoRoot is the root of this repository, found from this file's location.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// TestRoot is the directory of the test tooling's module (test/), nested in
// the repository so that the product's module requires none of it.
func TestRoot() string { return filepath.Join(RepoRoot(), "test") }

// BuildControlPlane builds the control plane binaries if they are missing and
// returns their directory.
func BuildControlPlane(log io.Writer) (string, error) {
	script := filepath.Join(RepoRoot(), "hack", "controlplane", "build.sh")
	cmd := exec.Command("bash", script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, log
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build the control plane with %s: %w", script, err)
	}
	return strings.TrimSpace(out.String()), nil
}

// Start builds what is missing and starts etcd and kube-apiserver on free
// loopback ports, and waits until the API server is ready.
func Start(ctx context.Context, opts Options) (_ *ControlPlane, err error) {
	log := opts.Log
	if log == nil {
		log = os.Stderr
	}
	bin, err := BuildControlPlane(log)
	if err != nil {
		return nil, err
	}
	dir, err := TempDir("cp")
	if err != nil {
		return nil, err
	}
	cp := &ControlPlane{Dir: dir, Bin: bin, log: log, procs: map[string]*Process{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, cp.Stop())
		}
	}()
	if err := cp.etcdPorts(); err != nil {
		return nil, err
	}
	if err := cp.StartEtcd(ctx); err != nil {
		return nil, err
	}
	if err := cp.writeCredentials(); err != nil {
		return nil, err
	}
	if cp.apiPort, err = FreePort(); err != nil {
		return nil, err
	}
	cp.URL = "https://127.0.0.1:" + strconv.Itoa(cp.apiPort)
	if err := cp.StartAPIServer(ctx); err != nil {
		return nil, err
	}
	return cp, nil
}

// etcdPorts picks etcd's client and peer URLs, once: a restarted etcd
// listens where the API server expects it.
func (cp *ControlPlane) etcdPorts() error {
	client, err := FreePort()
	if err != nil {
		return err
	}
	peer, err := FreePort()
	if err != nil {
		return err
	}
	cp.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", client)
	cp.etcdPeer = fmt.Sprintf("http://127.0.0.1:%d", peer)
	return nil
}

// StartEtcd starts etcd, or starts it again after StopEtcd, on the same
// ports and data, and waits until it is healthy. The API server reconnects
// by itself.
func (cp *ControlPlane) StartEtcd(ctx context.Context) error {
	p, err := cp.start("etcd", filepath.Join(cp.Bin, "etcd"),
		"--name=default",
		"--data-dir="+filepath.Join(cp.Dir, "etcd"),
		"--listen-client-urls="+cp.etcdURL, "--advertise-client-urls="+cp.etcdURL,
		"--listen-peer-urls="+cp.etcdPeer, "--initial-advertise-peer-urls="+cp.etcdPeer,
		"--initial-cluster=default="+cp.etcdPeer,
		"--unsafe-no-fsync", "--log-level=error")
	if err != nil {
		return err
	}
	return waitFor(ctx, 30*time.Second, p, "etcd", func() error {
		resp, err := http.Get(cp.etcdURL + "/health")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("etcd /health: %s", resp.Status)
		}
		return nil
	})
}

// StopEtcd stops etcd with SIGTERM, and SIGKILL if it has not exited after
// grace; its data stays for StartEtcd. The error says if it had to be killed.
func (cp *ControlPlane) StopEtcd(grace time.Duration) error {
	return cp.stopProc("etcd", syscall.SIGTERM, grace)
}

// writeCredentials writes the admin token and the ServiceAccount signing key.
func (cp *ControlPlane) writeCredentials() error {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return fmt.Errorf("make admin token: %w", err)
	}
	cp.adminToken = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(cp.Dir, "tokens.csv"),
		[]byte(cp.adminToken+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		return fmt.Errorf("write token file: %w", err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return fmt.Errorf("make service account key: %w", err)
	}
	der := x509.MarshalPKCS1PrivateKey(key)
	if err := os.WriteFile(filepath.Join(cp.Dir, "sa.key"),
		pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write service account key: %w", err)
	}
	return cp.writeServingCert()
}

// writeServingCert writes a CA and the API server's serving certificate,
// valid for loopback, for this machine's own addresses (where pods of a
// Node reach the API server) and for the names of the kubernetes Service.
func (cp *ControlPlane) writeServingCert() error {
	ips := []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 0, 0, 1)}
	if ip, err := HostIP(); err == nil {
		ips = append(ips, ip)
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make API server CA key: %w", err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "testcluster-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("make API server CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return fmt.Errorf("parse API server CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("make API server key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(7 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: ips,
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default",
			"kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("make API server certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode API server key: %w", err)
	}
	cp.CAData = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	files := map[string][]byte{
		"apiserver.crt": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"apiserver.key": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(cp.Dir, name), data, 0o600); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// HostIP is this machine's own IPv4 address: the first one, not loopback,
// of an interface that is up. A Node's kubelet registers it as its
// InternalIP, and its pods reach the API server there.
func HostIP() (net.IP, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list network interfaces: %w", err)
	}
	for _, iface := range ifaces {
		if iface.Flags&net.FlagUp == 0 || iface.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := iface.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
				return n.IP.To4(), nil
			}
		}
	}
	return nil, errors.New("no IPv4 address on an interface that is up, other than loopback")
}

// StartAPIServer starts kube-apiserver, or starts it again after
// StopAPIServer, on the same port and data, and waits for /readyz.
func (cp *ControlPlane) StartAPIServer(ctx context.Context) error {
	const issuer = "https://kubernetes.default.svc.cluster.local"
	p, err := cp.start("kube-apiserver", filepath.Join(cp.Bin, "kube-apiserver"),
		"--etcd-servers="+cp.etcdURL,
		// All addresses: the pods of a Node reach it at this machine's own.
		"--bind-address=0.0.0.0", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(cp.apiPort),
		"--tls-cert-file="+filepath.Join(cp.Dir, "apiserver.crt"),
		"--tls-private-key-file="+filepath.Join(cp.Dir, "apiserver.key"),
		// For logs and exec: a Node's kubelet listens on its InternalIP.
		"--kubelet-preferred-address-types=InternalIP",
		"--authorization-mode=RBAC",
		"--token-auth-file="+filepath.Join(cp.Dir, "tokens.csv"),
		"--service-account-issuer="+issuer, "--api-audiences="+issuer,
		"--service-account-key-file="+filepath.Join(cp.Dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(cp.Dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		// There is no other member and no real network: no kubernetes Service endpoints.
		"--endpoint-reconciler-type=none",
		"--v=0")
	if err != nil {
		return err
	}
	return waitFor(ctx, 90*time.Second, p, "kube-apiserver", func() error {
		if cp.Admin == nil {
			cp.AdminConfig = &rest.Config{
				Host: cp.URL, BearerToken: cp.adminToken,
				TLSClientConfig: rest.TLSClientConfig{CAData: cp.CAData},
				QPS:             200, Burst: 400, UserAgent: "testcluster-admin",
			}
			admin, err := kubernetes.NewForConfig(cp.AdminConfig)
			if err != nil {
				return err
			}
			cp.Admin = admin
		}
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		body, err := cp.Admin.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		if err != nil {
			return fmt.Errorf("/readyz: %w: %s", err, body)
		}
		return nil
	})
}

// StopAPIServer stops kube-apiserver with SIGTERM, as a rolling control plane
// update would, and SIGKILL if it has not exited after grace (with open
// watches it may drain for a minute). The error says if it had to be killed.
func (cp *ControlPlane) StopAPIServer(grace time.Duration) error {
	return cp.stopProc("kube-apiserver", syscall.SIGTERM, grace)
}

// StartControllerManager starts kube-controller-manager with the given
// controllers (such as "endpointslice,serviceaccount"), with admin rights.
func (cp *ControlPlane) StartControllerManager(ctx context.Context, controllers string) error {
	kubeconfig := filepath.Join(cp.Dir, "admin.kubeconfig")
	if err := WriteKubeconfig(kubeconfig, cp.URL, cp.CAData, cp.adminToken); err != nil {
		return err
	}
	port, err := FreePort()
	if err != nil {
		return err
	}
	p, err := cp.start("kube-controller-manager", filepath.Join(cp.Bin, "kube-controller-manager"),
		"--kubeconfig="+kubeconfig,
		"--authentication-kubeconfig="+kubeconfig, "--authorization-kubeconfig="+kubeconfig,
		"--controllers="+controllers, "--leader-elect=false",
		"--bind-address=127.0.0.1", "--secure-port="+strconv.Itoa(port),
		"--cert-dir="+filepath.Join(cp.Dir, "kcm-certs"),
		"--service-account-private-key-file="+filepath.Join(cp.Dir, "sa.key"),
		"--use-service-account-credentials=false",
		"--concurrent-service-endpoint-syncs=5",
		"--endpointslice-updates-batch-period=0s",
		"--v=0")
	if err != nil {
		return err
	}
	cp.mu.Lock()
	cp.controllers = controllers
	cp.mu.Unlock()
	return waitFor(ctx, 60*time.Second, p, "kube-controller-manager", func() error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureLoopbackTLS()}, Timeout: time.Second}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/healthz", port))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/healthz: %s", resp.Status)
		}
		return nil
	})
}

// StopControllerManager stops kube-controller-manager with SIGTERM, and
// SIGKILL if it has not exited after grace. After an API server restart a
// new one lists everything at once, where the old one may wait out its
// reflectors' back-off (up to a minute) before it sees changes again.
func (cp *ControlPlane) StopControllerManager(grace time.Duration) error {
	return cp.stopProc("kube-controller-manager", syscall.SIGTERM, grace)
}

// Processes returns the processes the control plane runs now.
func (cp *ControlPlane) Processes() []*Process {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	out := make([]*Process, 0, len(cp.procs))
	for _, p := range cp.procs {
		out = append(out, p)
	}
	return out
}

// Stop kills every process of the control plane and removes its directory.
func (cp *ControlPlane) Stop() error {
	var errs []error
	// API server first, so that it does not log the loss of etcd at length.
	for _, name := range []string{"kube-controller-manager", "kube-apiserver", "etcd"} {
		errs = append(errs, cp.stopProc(name, syscall.SIGKILL, 10*time.Second))
	}
	if err := os.RemoveAll(cp.Dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", cp.Dir, err))
	}
	return errors.Join(errs...)
}

func (cp *ControlPlane) start(name, path string, args ...string) (*Process, error) {
	p, err := StartProcess(name, path, args, nil, filepath.Join(cp.Dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cp.mu.Lock()
	cp.procs[name] = p
	cp.mu.Unlock()
	return p, nil
}

func (cp *ControlPlane) stopProc(name string, sig syscall.Signal, grace time.Duration) error {
	cp.mu.Lock()
	p := cp.procs[name]
	delete(cp.procs, name)
	cp.mu.Unlock()
	if p == nil {
		return nil
	}
	return p.Stop(sig, grace)
}

// waitFor polls check until it passes, the process exits, or timeout.
func waitFor(ctx context.Context, timeout time.Duration, p *Process, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		if last = check(); last == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited during start (%v); its log ends:\n%s", what, p.ExitErr(), p.LogTail(30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s: %v; its log ends:\n%s", what, timeout, last, p.LogTail(30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FreePort returns a TCP port that was free on all addresses a moment ago.
//
// It is picked at random below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), never from it: a port the kernel handed
// out for a listener on port 0 is soon handed out again as the local end of
// some outgoing connection (a CI run lost a sidecar's HEALTH_PORT that way),
// while ports below the range are only ever taken by explicit binds. It
// never returns one port twice in a process.
func FreePort() (int, error) {
	low := ephemeralLow()
	var last error
	for range 200 {
		port := portFloor + mrand.IntN(low-portFloor)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		l, err := net.Listen("tcp", ":"+strconv.Itoa(port))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("find a free port in [%d, %d): %v", portFloor, low, last)
}

// handedOut holds every port FreePort returned in this process, which it
// never returns again: a port is free again as soon as it was checked, and
// 200 random picks from about 12,800 ports collide with a probability of
// about 0.8 (the birthday bound); a bench run at N=200 met one. Ports are a process-wide
// resource, so this is the package's one piece of state.
var handedOut sync.Map

// portFloor is the lowest port FreePort hands out, above the well-known
// and most registered services' ports.
const portFloor = 20000

// ephemeralLow is the first port of the kernel's ephemeral range, or the
// Linux default 32768 where it cannot be read or leaves no room below.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	f := strings.Fields(string(b))
	if len(f) < 1 {
		return 32768
	}
	low, err := strconv.Atoi(f[0])
	if err != nil || low < portFloor+1000 {
		return 32768
	}
	return low
}
