package labeler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	k8stesting "k8s.io/client-go/testing"
)

const (
	testNamespace = "ns"
	self          = "self"
	key           = "role"
)

var (
	podsResource = corev1.SchemeGroupVersion.WithResource("pods")
	podKind      = corev1.SchemeGroupVersion.WithKind("Pod")
)

func pod(name string, podLabels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNamespace, Labels: podLabels}}
}

// cluster is a fake API server for pods: client-go's fake clientset, whose
// merge patches of labels are applied as the API server applies them. A
// resourceVersion in the patch is a precondition (409 Conflict when stale),
// and every write gives the pod a new resourceVersion, the same one the
// fake's watches count in, so that preconditions, watches and the labeler's
// resourceVersion comparisons behave as on a real server.
type cluster struct {
	t  *testing.T
	cs *fake.Clientset

	mu    sync.Mutex
	calls []call
}

// call is one request a client sent, whether it was answered or not.
type call struct {
	who, verb, name string
	selector        string         // list and watch
	body            map[string]any // patch
}

func newCluster(t *testing.T, pods ...*corev1.Pod) *cluster {
	t.Helper()
	c := &cluster{t: t, cs: fake.NewClientset()}
	c.cs.PrependReactor("patch", "pods", c.patch)
	for _, p := range pods {
		p = p.DeepCopy()
		p.ResourceVersion = c.nextResourceVersion()
		if err := c.cs.Tracker().Add(p); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// nextResourceVersion is the one the tracker gives its next write.
func (c *cluster) nextResourceVersion() string {
	list, err := c.cs.Tracker().List(podsResource, podKind, testNamespace)
	if err != nil {
		c.t.Fatalf("list pods in the tracker: %v", err)
	}
	lm, err := meta.ListAccessor(list)
	if err != nil {
		c.t.Fatal(err)
	}
	rv, err := strconv.Atoi(lm.GetResourceVersion())
	if err != nil {
		c.t.Fatalf("tracker resourceVersion %q: %v", lm.GetResourceVersion(), err)
	}
	return strconv.Itoa(rv + 1)
}

// patch applies a merge patch of metadata.labels with an optional
// metadata.resourceVersion precondition, and rejects anything else.
func (c *cluster) patch(a k8stesting.Action) (bool, runtime.Object, error) {
	pa := a.(k8stesting.PatchAction)
	var body struct {
		Metadata struct {
			Labels          map[string]*string `json:"labels"`
			ResourceVersion string             `json:"resourceVersion"`
		} `json:"metadata"`
	}
	dec := json.NewDecoder(bytes.NewReader(pa.GetPatch()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || pa.GetPatchType() != types.MergePatchType || pa.GetSubresource() != "" {
		c.t.Errorf("unexpected patch of %s: %s %s %q (%v)", pa.GetName(), pa.GetPatchType(), pa.GetSubresource(), pa.GetPatch(), err)
		return true, nil, apierrors.NewBadRequest("unexpected patch")
	}
	obj, err := c.cs.Tracker().Get(podsResource, pa.GetNamespace(), pa.GetName())
	if err != nil {
		return true, nil, err
	}
	p := obj.(*corev1.Pod).DeepCopy()
	if rv := body.Metadata.ResourceVersion; rv != "" && rv != p.ResourceVersion {
		return true, nil, apierrors.NewConflict(podsResource.GroupResource(), p.Name,
			fmt.Errorf("the object has been modified (resourceVersion %s, now %s)", rv, p.ResourceVersion))
	}
	if p.Labels == nil {
		p.Labels = map[string]string{}
	}
	for k, v := range body.Metadata.Labels {
		if v == nil {
			delete(p.Labels, k)
		} else {
			p.Labels[k] = *v
		}
	}
	p.ResourceVersion = c.nextResourceVersion()
	if err := c.cs.Tracker().Update(podsResource, p, pa.GetNamespace()); err != nil {
		return true, nil, err
	}
	return true, p, nil
}

func (c *cluster) record(cl call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, cl)
}

// callsBy returns the requests of who, in order, from the n-th on.
func (c *cluster) callsBy(who string, from int) []call {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []call
	n := 0
	for _, cl := range c.calls {
		if cl.who != who {
			continue
		}
		if n >= from {
			out = append(out, cl)
		}
		n++
	}
	return out
}

func (c *cluster) callsOf(who, verb string) []call {
	var out []call
	for _, cl := range c.callsBy(who, 0) {
		if cl.verb == verb {
			out = append(out, cl)
		}
	}
	return out
}

func (c *cluster) get(name string) *corev1.Pod {
	c.t.Helper()
	obj, err := c.cs.Tracker().Get(podsResource, testNamespace, name)
	if err != nil {
		c.t.Fatalf("get pod %s: %v", name, err)
	}
	return obj.(*corev1.Pod)
}

func (c *cluster) role(name string) string { return c.get(name).Labels[key] }

// setLabel changes one label of a pod as someone else would (nil: remove).
func (c *cluster) setLabel(name, k string, v *string) {
	c.t.Helper()
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]*string{k: v}}})
	if _, err := c.cs.CoreV1().Pods(testNamespace).Patch(context.Background(), name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
		c.t.Fatalf("set label %s=%v on %s: %v", k, v, name, err)
	}
}

func ptr(s string) *string { return &s }

// client is one replica's connection to the cluster. Like a real client it
// returns when ctx ends even if the server has not answered; the request then
// still runs and may land later. The test can hold requests back and make
// them fail.
type client struct {
	c    *cluster
	who  string
	pods typedcorev1.PodInterface
	// ignoreCtx makes calls wait for their answer even when ctx ends, as a
	// transport that does not abort would.
	ignoreCtx bool

	mu    sync.Mutex
	holds map[string]*hold
	fail  func(verb, name string) error
}

func (c *cluster) client(who string) *client {
	return &client{c: c, who: who, pods: c.cs.CoreV1().Pods(testNamespace), holds: map[string]*hold{}}
}

// hold is a request held back until released.
type hold struct {
	entered chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (h *hold) release() { h.once.Do(func() { close(h.gate) }) }

// holdNext holds back the next request of verb until release; it is released
// at the end of the test at the latest.
func (cl *client) holdNext(t *testing.T, verb string) *hold {
	h := &hold{entered: make(chan struct{}), gate: make(chan struct{})}
	cl.mu.Lock()
	cl.holds[verb] = h
	cl.mu.Unlock()
	t.Cleanup(h.release)
	return h
}

func (cl *client) setFail(fail func(verb, name string) error) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.fail = fail
}

type result[T any] struct {
	v   T
	err error
}

func send[T any](ctx context.Context, cl *client, rec call, fn func() (T, error)) (T, error) {
	cl.c.record(rec)
	cl.mu.Lock()
	h := cl.holds[rec.verb]
	delete(cl.holds, rec.verb)
	fail := cl.fail
	cl.mu.Unlock()
	run := func() (T, error) {
		if h != nil {
			close(h.entered)
			<-h.gate
		}
		if fail != nil {
			if err := fail(rec.verb, rec.name); err != nil {
				var zero T
				return zero, err
			}
		}
		return fn()
	}
	if cl.ignoreCtx {
		return run()
	}
	out := make(chan result[T], 1)
	go func() {
		v, err := run()
		out <- result[T]{v, err}
	}()
	select {
	case r := <-out:
		return r.v, r.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// The server side of a call never sees the client's context.
func (cl *client) Get(ctx context.Context, name string, opts metav1.GetOptions) (*corev1.Pod, error) {
	return send(ctx, cl, call{who: cl.who, verb: "get", name: name}, func() (*corev1.Pod, error) {
		return cl.pods.Get(context.Background(), name, opts)
	})
}

func (cl *client) List(ctx context.Context, opts metav1.ListOptions) (*corev1.PodList, error) {
	return send(ctx, cl, call{who: cl.who, verb: "list", selector: selectorOf(opts)}, func() (*corev1.PodList, error) {
		return cl.pods.List(context.Background(), opts)
	})
}

func (cl *client) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return send(ctx, cl, call{who: cl.who, verb: "watch", selector: selectorOf(opts)}, func() (watch.Interface, error) {
		return cl.pods.Watch(context.Background(), opts)
	})
}

func (cl *client) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*corev1.Pod, error) {
	var body map[string]any
	if err := json.Unmarshal(data, &body); err != nil {
		cl.c.t.Errorf("patch of %s is not JSON: %v: %s", name, err, data)
	}
	return send(ctx, cl, call{who: cl.who, verb: "patch", name: name, body: body}, func() (*corev1.Pod, error) {
		return cl.pods.Patch(context.Background(), name, pt, data, opts, subresources...)
	})
}

var _ Pods = (*client)(nil)

func selectorOf(opts metav1.ListOptions) string {
	var parts []string
	if opts.LabelSelector != "" {
		parts = append(parts, opts.LabelSelector)
	}
	if opts.FieldSelector != "" {
		parts = append(parts, "fields:"+opts.FieldSelector)
	}
	return strings.Join(parts, " ")
}

// wantPatch is the body of a merge patch of the role label.
func wantPatch(role Role, resourceVersion string) map[string]any {
	meta := map[string]any{"labels": map[string]any{key: string(role)}}
	if resourceVersion != "" {
		meta["resourceVersion"] = resourceVersion
	}
	return map[string]any{"metadata": meta}
}

func isPatch(cl call, name string, role Role) bool {
	labels, _ := cl.body["metadata"].(map[string]any)["labels"].(map[string]any)
	return cl.verb == "patch" && cl.name == name && labels[key] == string(role)
}

func forbidden(name string) error {
	return apierrors.NewForbidden(corev1.Resource("pods"), name, errors.New("RBAC: patch denied"))
}

func newLabeler(t *testing.T, cl *client, pod, peerSelector string, log *slog.Logger) *Labeler {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := New(Config{Pods: cl, Pod: pod, Key: key, PeerSelector: peerSelector, Log: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// start runs l until the test ends.
func start(t *testing.T, l *Labeler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// lockedBuffer is a log sink that the test can read while Run writes.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for line := range strings.Lines(b.buf.String()) {
		if strings.Contains(line, s) {
			n++
		}
	}
	return n
}
