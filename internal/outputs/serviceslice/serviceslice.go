// Package serviceslice points a selector-less Service at the leader: the
// leader writes one EndpointSlice of its own, naming its pod, and a leader
// stepping down deletes it, so that the Service routes to the leader alone
// without labels on pods.
//
// The rules that keep the Service from ever naming two pods:
//   - there is one slice per Service, with a fixed name (see SliceName), and
//     each leader updates that same object, so a new leader replaces the
//     previous leader's endpoint in one write, also when the previous leader
//     died without stepping down;
//   - the slice says endpointslice.kubernetes.io/managed-by: leader-elector,
//     so the endpointslice controllers leave it alone;
//   - a Service with a selector is refused: the endpointslice controller
//     routes it to the pods it selects, and this slice would add another;
//   - every write is conditional (the resourceVersion read before it) and is
//     sent only while this replica still leads (Config.Leading, asked right
//     before sending); stepping down first cancels the leader's write, then
//     deletes the slice only if it still names this pod, on the condition
//     that it has not changed since this pod wrote it (or, if that fails,
//     since it was read again), so a step-down never removes the next
//     leader's endpoint.
//
// The leader's write is asynchronous (Lead returns at once; Run does the
// work, retrying with back-off), so the election never waits for it.
package serviceslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/leader-elector/leader-elector/election"
	"github.com/leader-elector/leader-elector/internal/lasterr"
	"github.com/leader-elector/leader-elector/internal/leaderterm"
)

const (
	// ManagedBy is the slice's endpointslice.kubernetes.io/managed-by label.
	// The endpointslice controller manages only slices that say
	// endpointslice-controller.k8s.io, and the mirroring controller only
	// those that say endpointslicemirroring-controller.k8s.io.
	ManagedBy = "leader-elector"
	// HolderAnnotation holds the identity of the leader that wrote the slice.
	HolderAnnotation = "leader-elector/holder-identity"
	// TermAnnotation holds the Lease's leaseTransitions of the term in
	// which the slice was written: with the holder, it tells a slice of
	// this term from one a later leader wrote with the same address (two
	// hostNetwork replicas on one node, without POD_NAME).
	TermAnnotation = "leader-elector/term"
	// nameSuffix makes the slice's name from the Service's. The
	// endpointslice controller names its slices <service>-<5 random
	// characters>, so they never collide.
	nameSuffix = "-leader-elector"
	// skipMirrorLabel on an Endpoints object stops the mirroring controller.
	skipMirrorLabel = "endpointslice.kubernetes.io/skip-mirror"
)

// SliceName is the name of the EndpointSlice for Service service. A
// Service's name is an RFC 1035 label of at most 63 characters, so the
// result is always a valid object name (at most 253); the RBAC in deploy/
// grants this name.
func SliceName(service string) string { return service + nameSuffix }

// Slices is what the writer needs of the EndpointSlice API of the Service's
// namespace; client-go's discoveryv1.EndpointSliceInterface has it, and so
// does kubeclient.EndpointSlices.
type Slices interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*discoveryv1.EndpointSlice, error)
	Create(ctx context.Context, s *discoveryv1.EndpointSlice, opts metav1.CreateOptions) (*discoveryv1.EndpointSlice, error)
	Update(ctx context.Context, s *discoveryv1.EndpointSlice, opts metav1.UpdateOptions) (*discoveryv1.EndpointSlice, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// Services reads the Service; client-go's corev1.ServiceInterface has it.
type Services interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Service, error)
}

// Endpoints reads core/v1 Endpoints; client-go's corev1.EndpointsInterface
// has it.
type Endpoints interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Endpoints, error)
}

// Config configures a Writer.
type Config struct {
	// Slices, Services and Endpoints are the APIs of the Service's
	// namespace. Endpoints is optional: nil skips the check for an
	// Endpoints object left by k8s-await-election.
	Slices    Slices
	Services  Services
	Endpoints Endpoints
	// Namespace and Service name the Service.
	Namespace, Service string
	// Ports are the endpoint's ports (config.ParseServicePorts).
	Ports []discoveryv1.EndpointPort
	// PodIP is the endpoint's address; its family is the slice's
	// addressType.
	PodIP string
	// Pod and PodNamespace name the own pod, the endpoint's targetRef; an
	// empty Pod writes no targetRef.
	Pod, PodNamespace string
	// NodeName is the endpoint's nodeName; empty: none.
	NodeName string
	// Identity is the election identity, written into HolderAnnotation.
	Identity string
	// Leading, if set, is asked right before every write of a leader term:
	// false ends the term's work, as if leadership had ended. The sidecar
	// passes the election's Leading, which turns false at the renew
	// deadline.
	Leading func() bool
	// Clock times the back-off between retries. Default: clock.RealClock{}.
	Clock clock.WithTicker
	Log   *slog.Logger
}

// Status is what the writer reports.
type Status struct {
	// Service is namespace/name of the Service, Slice the slice's name.
	Service string `json:"service"`
	Slice   string `json:"slice"`
	// Names is true while the slice names this pod, as last written or read.
	Names bool `json:"names_this_pod"`
	// LastError is the latest error of a write, empty once recovered.
	LastError string `json:"last_error,omitempty"`
}

// Writer writes and removes the slice. Run must be running for Lead to take
// effect.
type Writer struct {
	cfg   Config
	log   *slog.Logger
	clock clock.WithTicker
	name  string
	ip    string // canonical
	addr  discoveryv1.AddressType
	ports []discoveryv1.EndpointPort
	errs  *lasterr.Tracker

	// wish is the wish to lead (the slice should name this pod), by
	// generation, and its running term.
	wish *leaderterm.Wish

	mu   sync.Mutex
	term string // the leaseTransitions of the term Lead began, as written in TermAnnotation
	done int    // the wish's generation last written
	// written is the slice as this pod last wrote or read it naming
	// itself; nil when it does not, as far as this pod knows.
	written *discoveryv1.EndpointSlice
}

// New returns a Writer for cfg.
func New(cfg Config) (*Writer, error) {
	if cfg.Slices == nil || cfg.Services == nil || cfg.Namespace == "" || cfg.Service == "" || len(cfg.Ports) == 0 {
		return nil, errors.New("serviceslice config: Slices, Services, Namespace, Service and Ports are required")
	}
	ip, err := netip.ParseAddr(cfg.PodIP)
	if err != nil {
		return nil, fmt.Errorf("serviceslice config: pod IP %q: %w", cfg.PodIP, err)
	}
	ip = ip.Unmap()
	addr := discoveryv1.AddressTypeIPv4
	if ip.Is6() {
		addr = discoveryv1.AddressTypeIPv6
	}
	// The API server's defaults, so that a slice read back compares equal.
	ports := make([]discoveryv1.EndpointPort, len(cfg.Ports))
	for i, p := range cfg.Ports {
		p = *p.DeepCopy()
		if p.Name == nil {
			p.Name = new("")
		}
		if p.Protocol == nil {
			p.Protocol = new(corev1.ProtocolTCP)
		}
		ports[i] = p
	}
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	name := SliceName(cfg.Service)
	log = log.With("service", cfg.Namespace+"/"+cfg.Service, "endpointslice", name)
	clk := cfg.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	return &Writer{cfg: cfg, log: log, clock: clk, name: name, ip: ip.String(), addr: addr, ports: ports,
		errs: lasterr.New(log, "service endpoint error; election goes on", "service endpoint recovered"),
		wish: leaderterm.NewWish(cfg.Leading)}, nil
}

// Status reports the writer's state.
func (w *Writer) Status() Status {
	w.mu.Lock()
	names := w.written != nil
	w.mu.Unlock()
	return Status{Service: w.cfg.Namespace + "/" + w.cfg.Service, Slice: w.name, Names: names, LastError: w.errs.Last()}
}

// Lead asks for the slice to name this pod and returns at once: Run writes
// it, retrying until it is written or leadership ends. Its signature is
// sidecar.Output's Lead.
func (w *Writer) Lead(_ context.Context, st election.State) error {
	w.mu.Lock()
	w.term = strconv.Itoa(st.Transitions)
	w.mu.Unlock()
	w.wish.Set(true)
	return nil
}

// Follow ends the leader's work: it cancels a write in flight and waits for
// it to return, then deletes the slice if it still names this pod, retrying
// until ctx ends. Its signature is sidecar.Output's Follow.
func (w *Writer) Follow(ctx context.Context, _ election.State) error {
	select {
	case <-w.wish.Set(false):
	case <-ctx.Done():
		return fmt.Errorf("the leader's write to EndpointSlice %s/%s did not return; the next leader replaces it: %w", w.cfg.Namespace, w.name, ctx.Err())
	}
	backoff := leaderterm.Backoff(50 * time.Millisecond)
	for {
		err := w.withdraw(ctx)
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) { // a conflict: read it again at once
			w.errs.Note(err)
			if !leaderterm.Sleep(ctx, w.clock, backoff.Step(), nil) {
				return fmt.Errorf("%w; the next leader replaces it", err)
			}
		}
	}
}

// Run does the leader's writes until ctx ends. It first checks, once, for
// what would make the Service name another pod: a leftover Endpoints object
// or a selector on the Service, and logs it.
func (w *Writer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { w.checkService(ctx) }) // never delays the first write
	for {
		lead, gen := w.wish.Get()
		w.mu.Lock()
		done := w.done
		w.mu.Unlock()
		if lead && done < gen {
			if t := w.wish.Start(ctx, gen, w.lead); t != nil {
				<-t.Done()
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-w.wish.Wake():
		}
	}
}

// lead writes the slice for the term of gen, retrying with back-off, until
// it is written or the term ends.
func (w *Writer) lead(ctx context.Context, gen int) {
	backoff := leaderterm.Backoff(200 * time.Millisecond)
	for races := 0; ; {
		err := w.write(ctx, gen)
		switch {
		case err == nil:
			w.errs.Note(nil)
			fallthrough
		case errors.Is(err, leaderterm.ErrNotLeading):
			// Written, or leadership ended (Follow comes next): the term's
			// work is over until the next Lead.
			w.mu.Lock()
			w.done = max(w.done, gen)
			w.mu.Unlock()
			return
		case ctx.Err() != nil:
			return
		case races < 5 && (apierrors.IsConflict(err) || apierrors.IsNotFound(err)):
			// Changed or deleted since it was read: read it again at once.
			races++
			continue
		}
		races = 0
		w.errs.Note(err)
		if !leaderterm.Sleep(ctx, w.clock, backoff.Step(), nil) {
			return
		}
	}
}
