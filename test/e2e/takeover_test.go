package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/leasestore"
	"github.com/leader-elector/leader-elector/test/testcluster"
)

// TestTakeOverHandover: with POD_IP, the standby writes its address beside
// its offer and the leader its public key beside its record. On SIGTERM the
// leader sends the standby a signed take-over offer, and the standby writes
// itself as holder: the Lease goes from the old holder to the standby in one
// write, never released in between. A forged offer posted to a follower's
// health port is refused with 409 and moves nothing.
func TestTakeOverHandover(t *testing.T) {
	f := newFleet(t)
	for i := range 3 {
		pod := fmt.Sprintf("replica-%d", i)
		f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		f.start(pod, f.kubeconfig, "POD_UID="+f.podUID(pod), "POD_IP=127.0.0.1")
	}
	leader := f.waitLeader(30*time.Second, false)
	standby := f.waitStandby(10*time.Second, leader)
	l, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	oldKey := l.Annotations[leasestore.AnnotationHolderKey]
	if len(oldKey) != 44 {
		t.Fatalf("annotation %s = %q, want the leader's ed25519 public key in base64", leasestore.AnnotationHolderKey, oldKey)
	}

	// A forged offer: right Lease, holder, version and standby, wrong key.
	_, mallory, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := election.SignOffer(election.Offer{Lease: f.ns + "/" + leaseName, From: leader, To: standby, Version: l.ResourceVersion}, mallory)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(f.byPod(standby).HealthURL()+"/v1/take-over", "application/json", bytes.NewReader(forged))
	if err != nil {
		t.Fatal(err)
	}
	why, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(why), "signature is not the holder's") {
		t.Errorf("forged offer: %s %q, want 409 naming the signature", resp.Status, why)
	}
	if h := f.holder(t.Context()); h != leader {
		t.Fatalf("holder after a forged offer = %q, want %s still", h, leader)
	}

	// Every record the Lease takes from here on, as the API server has it.
	w, err := cp.Admin.CoordinationV1().Leases(f.ns).Watch(t.Context(), metav1.ListOptions{
		FieldSelector: "metadata.name=" + leaseName, ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	old := f.byPod(leader)
	start := time.Now()
	if err := old.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	next := f.waitNewLeader(leader, 10*time.Second)
	took := time.Since(start)
	waitExit(t, old, 30*time.Second)
	t.Logf("SIGTERM of %s to the status file of %s by take-over: %s", leader, next.Opts.Pod, ms(took))
	if next.Opts.Pod != standby {
		t.Fatalf("%s leads after the handover, want the standby %s", next.Opts.Pod, standby)
	}
	if !strings.Contains(old.Log(), `msg="handed the lease over" lease=`) || strings.Contains(old.Log(), `msg="released lease"`) {
		t.Errorf("the old leader's log does not show a take-over without a release:\n%s", old.LogTail(20))
	}
	if !strings.Contains(next.Log(), `taken over from \"`+leader+`\"`) {
		t.Errorf("the standby's log does not show the take-over from %s:\n%s", leader, next.LogTail(20))
	}
	var holders []string
	for ev := range w.ResultChan() {
		lease, ok := ev.Object.(*coordinationv1.Lease)
		if !ok || lease.Spec.HolderIdentity == nil {
			holders = append(holders, fmt.Sprintf("%s without a holder", ev.Type))
			break
		}
		holders = append(holders, *lease.Spec.HolderIdentity)
		if *lease.Spec.HolderIdentity == standby {
			if k := lease.Annotations[leasestore.AnnotationHolderKey]; len(k) != 44 || k == oldKey {
				t.Errorf("holder key after the take-over = %q, want the standby's own (the old one was %q)", k, oldKey)
			}
			if got := lease.Annotations[leasestore.AnnotationHolderUID]; got != f.podUID(standby) {
				t.Errorf("holder UID after the take-over = %q, want the standby's %q", got, f.podUID(standby))
			}
			break
		}
	}
	if len(holders) == 0 || holders[len(holders)-1] != standby || slices.Contains(holders, "") {
		t.Errorf("holders the Lease took after SIGTERM: %q, want the standby %s straight after %s, never released", holders, standby, leader)
	}
}

// TestTakeOverOfAStaleView: two handovers to standbys whose watch is held
// (deaf), so that each knows an older version of the Lease than its
// leader's latest renew. The first standby knows the version that renew was
// written over, which the offer names (its base): it takes the Lease over
// in one write, without a read (when a second renew came before the
// SIGTERM, it reads the Lease once first). The second standby's view is two
// renews behind: it reads the Lease once on the offer, and its take-over
// write is answered 409, as when another write got there first, which
// leaves its leader to release the Lease, as client-go's ReleaseOnCancel
// does: a follower takes it at once. The endpoint of the nudge that earlier
// versions sent after such a release is gone.
func TestTakeOverOfAStaleView(t *testing.T) {
	f := newFleet(t)
	ears := map[string]*deafProxy{}
	for i := range 4 {
		pod := fmt.Sprintf("replica-%d", i)
		f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		ears[pod] = newDeafProxy(t, f, pod)
		f.start(pod, ears[pod].kubeconfig, "POD_UID="+f.podUID(pod), "POD_IP=127.0.0.1", "LOG_LEVEL=debug")
	}
	leader := f.waitLeader(30*time.Second, false)
	// handOver holds the watch of leader's standby, waits for renews
	// renews after that, has the standby's next write answered 409 if
	// conflict, sends leader SIGTERM and returns the standby, which must
	// lead next.
	handOver := func(leader string, conflict bool, renews int) (old, next *testcluster.Sidecar) {
		t.Helper()
		standby := f.waitStandby(10*time.Second, leader)
		s := f.byPod(standby)
		waitStatus(t, s, 10*time.Second, "watching", func(st map[string]any) bool { return st["watching"] == true })
		port := s.HealthURL()[strings.LastIndexByte(s.HealthURL(), ':')+1:]
		l, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(t.Context(), leaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got, want := l.Annotations[leasestore.AnnotationStandbyAddress], "127.0.0.1:"+port; got != want {
			t.Fatalf("annotation %s = %q, want the standby's POD_IP:HEALTH_PORT %q", leasestore.AnnotationStandbyAddress, got, want)
		}
		ears[standby].setDeaf(true)
		defer ears[standby].setDeaf(false)
		seen := l.ResourceVersion
		for range renews {
			if !eventually(10*time.Second, func() bool {
				cur, err := cp.Admin.CoordinationV1().Leases(f.ns).Get(t.Context(), leaseName, metav1.GetOptions{})
				if err == nil && cur.ResourceVersion != seen {
					seen = cur.ResourceVersion
					return true
				}
				return false
			}) {
				t.Fatal("the leader did not renew within 10s")
			}
		}
		ears[standby].conflictNextWrite(conflict)
		old = f.byPod(leader)
		start := time.Now()
		if err := old.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		next = f.waitNewLeader(leader, 10*time.Second)
		took := time.Since(start)
		waitExit(t, old, 30*time.Second)
		t.Logf("SIGTERM of %s to the status file of %s, the standby %s's watch held, its take-over write answered 409: %v: %s", leader, next.Opts.Pod, standby, conflict, ms(took))
		// Whether the offer's base is the version the standby knew (one
		// renew since), as the old leader's offer says.
		read := strings.Contains(s.Log(), `msg="reading the lease on a take-over offer for a version this candidate has not seen"`)
		offered := regexp.MustCompile(`msg="offering the lease" .*version=(\S+) base=(\S*)`).FindStringSubmatch(old.Log())
		switch {
		case offered == nil:
			t.Errorf("the old leader %s's log shows no offer:\n%s", leader, old.LogTail(20))
		case offered[2] == l.ResourceVersion && read:
			t.Errorf("the standby %s read the Lease on an offer for the renew (version %s) over the version it knew (%s):\n%s", standby, offered[1], offered[2], s.LogTail(20))
		case offered[2] == l.ResourceVersion:
			t.Logf("the offer was for the renew %s over %s, which the standby knew: taken without a read", offered[1], offered[2])
		case !read:
			t.Errorf("the standby %s did not read the Lease on the offer (version %s, base %q) two renews ahead of its view (%s):\n%s", standby, offered[1], offered[2], l.ResourceVersion, s.LogTail(20))
		default:
			t.Logf("the offer was for version %s, two renews ahead of the standby's view %s: read once on the offer", offered[1], l.ResourceVersion)
		}
		if !conflict && next.Opts.Pod != standby {
			t.Fatalf("%s leads after the handover, want the standby %s", next.Opts.Pod, standby)
		}
		if v, err := f.lease(t.Context()); err != nil || v.holder != next.Opts.Pod || v.holderUID != f.podUID(next.Opts.Pod) {
			t.Errorf("Lease %+v (%v), want %s holding it with its pod UID", v, err, next.Opts.Pod)
		}
		return old, next
	}

	old, next := handOver(leader, false, 1)
	if !strings.Contains(old.Log(), `msg="handed the lease over"`) || strings.Contains(old.Log(), `msg="released lease"`) {
		t.Errorf("the old leader's log does not show a take-over without a release:\n%s", old.LogTail(20))
	}

	old, next = handOver(next.Opts.Pod, true, 2)
	if !strings.Contains(old.Log(), `msg="the successor did not take the lease; releasing it"`) || !strings.Contains(old.Log(), "409 Conflict") ||
		!strings.Contains(old.Log(), `msg="released lease"`) {
		t.Errorf("the old leader's log does not show the standby's refusal of the take-over (409) and the release:\n%s", old.LogTail(20))
	}

	// The nudge's endpoint is gone: nothing on the health port makes a
	// candidate read the Lease but a signed offer.
	for _, o := range f.all() {
		if o.Exited() {
			continue
		}
		resp, err := http.Post(o.HealthURL()+"/v1/lease-changed", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("POST /v1/lease-changed on %s: %s, want 404 or 405: the endpoint is gone", o.Opts.Pod, resp.Status)
		}
		break
	}
}

// deafProxy stands between one sidecar and its testcluster.Proxy: while
// deaf, it holds the responses of watches where they are, as a watch whose
// event the API server has not sent yet; other requests pass.
type deafProxy struct {
	kubeconfig string
	mu         sync.Mutex
	deaf       bool
	heard      chan struct{} // closed when deaf ends
	conflict   bool          // the next write is answered 409
}

// conflictNextWrite has the next PUT answered 409 Conflict, as the API
// server answers a write on a version that another write replaced, if on.
func (p *deafProxy) conflictNextWrite(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.conflict = on
}

// takeConflict reports whether r is to be answered 409, once.
func (p *deafProxy) takeConflict(r *http.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if r.Method != http.MethodPut || !p.conflict {
		return false
	}
	p.conflict = false
	return true
}

func newDeafProxy(t *testing.T, f *fleet, pod string) *deafProxy {
	t.Helper()
	token, err := cp.PodBoundToken(t.Context(), f.ns, testcluster.ServiceAccount, pod)
	if err != nil {
		t.Fatal(err)
	}
	inner, err := testcluster.NewProxy(cp.URL, cp.CAData, token)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inner.Close)
	target, err := url.Parse(inner.URL)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.FlushInterval = -1
	rp.ErrorHandler = func(w http.ResponseWriter, _ *http.Request, _ error) { w.WriteHeader(http.StatusBadGateway) }
	p := &deafProxy{heard: make(chan struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.takeConflict(r) {
			st := apierrors.NewConflict(coordinationv1.Resource("leases"), leaseName, errors.New("the object has been modified")).ErrStatus
			st.Kind, st.APIVersion = "Status", "v1"
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			_ = json.NewEncoder(w).Encode(st)
			return
		}
		if q := r.URL.Query().Get("watch"); q == "true" || q == "1" {
			w = &deafWriter{ResponseWriter: w, p: p, ctx: r.Context()}
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		// This runs before the fleet stops the sidecars, which still watch
		// through here and may have opened a connection a moment ago.
		// http.Server.Close closes every connection and waits for no
		// handler (httptest.Server.Close waits for them: a watch opened
		// after CloseClientConnections held it for the API server's watch
		// timeout, half an hour). The handlers end with their connections.
		p.setDeaf(false)
		_ = srv.Close()
	})
	p.kubeconfig = filepath.Join(f.dir, pod+"-deaf.kubeconfig")
	if err := testcluster.WriteKubeconfig(p.kubeconfig, "http://"+ln.Addr().String(), nil, ""); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p *deafProxy) setDeaf(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on == p.deaf {
		return
	}
	p.deaf = on
	if !on {
		close(p.heard)
		p.heard = make(chan struct{})
	}
}

// hear waits while the proxy is deaf; false when ctx ended first.
func (p *deafProxy) hear(ctx context.Context) bool {
	p.mu.Lock()
	deaf, heard := p.deaf, p.heard
	p.mu.Unlock()
	if !deaf {
		return true
	}
	select {
	case <-heard:
		return true
	case <-ctx.Done():
		return false
	}
}

type deafWriter struct {
	http.ResponseWriter
	p   *deafProxy
	ctx context.Context
}

func (w *deafWriter) Write(b []byte) (int, error) {
	if !w.p.hear(w.ctx) {
		return 0, w.ctx.Err()
	}
	return w.ResponseWriter.Write(b)
}

func (w *deafWriter) Flush() {
	if w.p.hear(w.ctx) {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

func (w *deafWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// waitExit waits for s to exit after a SIGTERM, at most d.
func waitExit(t *testing.T, s *testcluster.Sidecar, d time.Duration) {
	t.Helper()
	select {
	case <-s.Done():
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s of SIGTERM:\n%s", s.Opts.Pod, d, s.LogTail(30))
	}
}

// TestTakeOverIsConfirmedByTheLease: a success answer at the standby's
// address is no take-over. The standby's address in the Lease is set, as
// anyone with write access to the Lease can set it, to a catch-all server
// that answers every request with 200 and writes nothing; on SIGTERM the
// leader offers it the Lease, and then releases it as without an offer,
// because the release on the offered version succeeds: no write took the
// Lease. Before, the leader trusted the 200, skipped the release, and the
// Lease had no leader until it expired.
func TestTakeOverIsConfirmedByTheLease(t *testing.T) {
	f := newFleet(t)
	for i := range 3 {
		pod := fmt.Sprintf("replica-%d", i)
		f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
		f.start(pod, f.kubeconfig, "POD_UID="+f.podUID(pod), "POD_IP=127.0.0.1")
	}
	leader := f.waitLeader(30*time.Second, false)
	f.waitStandby(10*time.Second, leader)

	var offers sync.WaitGroup
	offers.Add(1)
	var once sync.Once
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	catchAll := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/take-over" {
			once.Do(offers.Done)
		}
		w.WriteHeader(http.StatusOK)
	})}
	go func() { _ = catchAll.Serve(ln) }()
	t.Cleanup(func() { _ = catchAll.Close() })

	leases := cp.Admin.CoordinationV1().Leases(f.ns)
	for {
		l, err := leases.Get(t.Context(), leaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		l.Annotations[leasestore.AnnotationStandbyAddress] = ln.Addr().String()
		if _, err = leases.Update(t.Context(), l, metav1.UpdateOptions{}); err == nil {
			break
		} else if !apierrors.IsConflict(err) {
			t.Fatal(err)
		}
	}
	// The leader's renews keep the address it reads.
	time.Sleep(2 * retryPeriod)
	l, err := leases.Get(t.Context(), leaseName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Annotations[leasestore.AnnotationStandbyAddress]; got != ln.Addr().String() || *l.Spec.HolderIdentity != leader {
		t.Fatalf("standby address %q, holder %q; want the catch-all's %s and %s", got, *l.Spec.HolderIdentity, ln.Addr(), leader)
	}

	w, err := leases.Watch(t.Context(), metav1.ListOptions{FieldSelector: "metadata.name=" + leaseName, ResourceVersion: l.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := f.byPod(leader).Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	offered := make(chan struct{})
	go func() { offers.Wait(); close(offered) }()
	select {
	case <-offered:
	case <-time.After(10 * time.Second):
		t.Fatal("the leader sent no take-over offer to the standby's address")
	}
	for {
		select {
		case ev := <-w.ResultChan():
			l, ok := ev.Object.(*coordinationv1.Lease)
			if !ok {
				t.Fatalf("watch event %s: %v", ev.Type, ev.Object)
			}
			if h := l.Spec.HolderIdentity; h == nil || *h == "" {
				if d := l.Spec.LeaseDurationSeconds; d != nil && *d == 1 {
					return // released: the others take it at once
				}
				continue
			}
			if *l.Spec.HolderIdentity != leader {
				t.Fatalf("%s took the Lease without a release after the offer to a catch-all: it waited out the expiry", *l.Spec.HolderIdentity)
			}
		case <-time.After(2 * leaseDuration):
			t.Fatal("no release within 2 x LEASE_DURATION after the offer to a catch-all server")
		}
	}
}
