package labeler

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"k8s.io/apimachinery/pkg/util/wait"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

const (
	testNamespace = "ns"
	self          = "self"
	key           = "role"
)

func pod(name, resourceVersion string, podLabels map[string]string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: name, Namespace: testNamespace, ResourceVersion: resourceVersion, Labels: podLabels,
	}}
}

// patchCall is one patch the labeler sent, failed or not.
type patchCall struct {
	name string
	typ  types.PatchType
	body map[string]any
}

// fakePods is a fake clientset that records the pod patches and lists it
// sees, in order, and can make patches fail or hold lists back.
type fakePods struct {
	cs *fake.Clientset

	mu        sync.Mutex
	patches   []patchCall
	lists     []string // label selectors
	failPatch func(name string) error
	listHook  func()
}

func newFakePods(t *testing.T, pods ...*corev1.Pod) *fakePods {
	t.Helper()
	objs := make([]runtime.Object, len(pods))
	for i, p := range pods {
		objs[i] = p
	}
	f := &fakePods{cs: fake.NewClientset(objs...)}
	f.cs.PrependReactor("*", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		switch a.GetVerb() {
		case "patch":
			p := a.(k8stesting.PatchAction)
			var body map[string]any
			if err := json.Unmarshal(p.GetPatch(), &body); err != nil {
				t.Errorf("patch of %s is not JSON: %v: %s", p.GetName(), err, p.GetPatch())
			}
			f.mu.Lock()
			f.patches = append(f.patches, patchCall{name: p.GetName(), typ: p.GetPatchType(), body: body})
			fail := f.failPatch
			f.mu.Unlock()
			if fail != nil {
				if err := fail(p.GetName()); err != nil {
					return true, nil, err
				}
			}
		case "list":
			f.mu.Lock()
			f.lists = append(f.lists, a.(k8stesting.ListAction).GetListRestrictions().Labels.String())
			hook := f.listHook
			f.mu.Unlock()
			if hook != nil {
				hook()
			}
		}
		return false, nil, nil // on to the object tracker
	})
	return f
}

func (f *fakePods) setFailPatch(fail func(name string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failPatch = fail
}

func (f *fakePods) patchCalls() []patchCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]patchCall(nil), f.patches...)
}

func (f *fakePods) listSelectors() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.lists...)
}

func (f *fakePods) podLabels(t *testing.T, name string) map[string]string {
	t.Helper()
	p, err := f.cs.CoreV1().Pods(testNamespace).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get pod %s: %v", name, err)
	}
	return p.Labels
}

// holdLists makes the next list block until the returned release is called;
// entered returns once the list is held.
func (f *fakePods) holdLists(t *testing.T) (entered func(), release func()) {
	in := make(chan struct{}, 1)
	gate := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	f.mu.Lock()
	f.listHook = func() {
		select {
		case in <- struct{}{}:
		default:
		}
		<-gate
	}
	f.mu.Unlock()
	t.Cleanup(release) // runs before Run's cleanup, which waits for Run
	entered = func() {
		t.Helper()
		select {
		case <-in:
		case <-time.After(5 * time.Second):
			t.Fatal("timed out waiting for the labeler to list peers")
		}
	}
	return entered, release
}

func forbidden(name string) error {
	return apierrors.NewForbidden(corev1.Resource("pods"), name, errors.New("RBAC: patch denied"))
}

func newLabeler(t *testing.T, f *fakePods, peerSelector string, log *slog.Logger) *Labeler {
	t.Helper()
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l, err := New(Config{Pods: f.cs.CoreV1().Pods(testNamespace), Pod: self, Key: key, PeerSelector: peerSelector, Logger: log})
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

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 5*time.Second, true,
		func(context.Context) (bool, error) { return cond(), nil })
	if err != nil {
		t.Fatalf("timed out waiting until %s", what)
	}
}

func waitRole(t *testing.T, l *Labeler, role Role) {
	t.Helper()
	eventually(t, "the labeler wrote "+string(role), func() bool {
		s := l.Status()
		return s.Role == role && s.Want == role
	})
}

// wantPatch is the body of a merge patch of the role label.
func wantPatch(role Role, resourceVersion string) map[string]any {
	meta := map[string]any{"labels": map[string]any{key: string(role)}}
	if resourceVersion != "" {
		meta["resourceVersion"] = resourceVersion
	}
	return map[string]any{"metadata": meta}
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

var _ io.Writer = (*lockedBuffer)(nil)

func TestNew(t *testing.T) {
	pods := fake.NewClientset().CoreV1().Pods(testNamespace)
	tests := []struct {
		name         string
		cfg          Config
		wantErr      string // empty: no error
		wantSelector string
	}{
		{name: "default peer selector", cfg: Config{Pods: pods, Pod: self, Key: key}},
		{name: "explicit peer selector", cfg: Config{Pods: pods, Pod: self, Key: key, PeerSelector: "app=web"}, wantSelector: "app=web"},
		{name: "selector that selects everything", cfg: Config{Pods: pods, Pod: self, Key: key, PeerSelector: " "}, wantErr: "selects every pod"},
		{name: "unparsable selector", cfg: Config{Pods: pods, Pod: self, Key: key, PeerSelector: "a=("}, wantErr: `peer selector "a=("`},
		{name: "no pods API", cfg: Config{Pod: self, Key: key}, wantErr: "required"},
		{name: "no pod", cfg: Config{Pods: pods, Key: key}, wantErr: "required"},
		{name: "no key", cfg: Config{Pods: pods, Pod: self}, wantErr: "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := New(tt.cfg)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("New: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			s := l.Status()
			if s.PeerSelector != tt.wantSelector || s.Want != Follower || s.Role != "" {
				t.Errorf("Status() = %+v, want follower wanted, nothing written, peer selector %q", s, tt.wantSelector)
			}
		})
	}
}

func TestRunStartsAsFollower(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
	}{
		{name: "no role label yet", labels: map[string]string{"app": "web", "keep": "me"}},
		{name: "stale leader label from a previous run", labels: map[string]string{"app": "web", "keep": "me", key: "leader"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakePods(t, pod(self, "5", tt.labels))
			l := newLabeler(t, f, "", nil)
			start(t, l)
			waitRole(t, l, Follower)

			want := map[string]string{"app": "web", "keep": "me", key: "follower"}
			if got := f.podLabels(t, self); !reflect.DeepEqual(got, want) {
				t.Errorf("own pod labels = %v, want %v", got, want)
			}
			calls := f.patchCalls()
			if len(calls) != 1 {
				t.Fatalf("patches = %+v, want exactly one", calls)
			}
			if c := calls[0]; c.name != self || c.typ != types.MergePatchType || !reflect.DeepEqual(c.body, wantPatch(Follower, "")) {
				t.Errorf("patch = %+v, want a merge patch of %s with %v", c, self, wantPatch(Follower, ""))
			}
			if lists := f.listSelectors(); len(lists) != 0 {
				t.Errorf("a follower listed peers: %q", lists)
			}
		})
	}
}

func TestSetLeaderDemotesStalePeersFirst(t *testing.T) {
	tests := []struct {
		name      string
		ownLabels map[string]string
		// early asks for leader before Run starts, so that the own pod still
		// says leader when the peers are listed and is among them.
		early bool
	}{
		{name: "from follower", ownLabels: map[string]string{"app": "web"}},
		{name: "own pod still says leader", ownLabels: map[string]string{"app": "web", key: "leader"}, early: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakePods(t,
				pod(self, "10", tt.ownLabels),
				pod("stale-a", "11", map[string]string{"app": "web", key: "leader"}),
				pod("stale-b", "12", map[string]string{"app": "web", key: "leader"}),
				pod("follower", "13", map[string]string{"app": "web", key: "follower"}),
				pod("other-app", "14", map[string]string{"app": "db", key: "leader"}),
			)
			l := newLabeler(t, f, "", nil)
			before := 0 // patches before Set(Leader)
			if tt.early {
				l.Set(Leader)
				start(t, l)
			} else {
				start(t, l)
				waitRole(t, l, Follower)
				before = len(f.patchCalls())
				l.Set(Leader)
			}
			waitRole(t, l, Leader)

			calls := f.patchCalls()[before:]
			if len(calls) != 3 {
				t.Fatalf("patches after Set(Leader) = %+v, want two demotions and the own pod", calls)
			}
			if last := calls[len(calls)-1]; last.name != self || !reflect.DeepEqual(last.body, wantPatch(Leader, "")) {
				t.Errorf("last patch = %+v, want the own pod labelled leader", last)
			}
			demoted := map[string]bool{}
			for _, c := range calls[:len(calls)-1] {
				rv := map[string]string{"stale-a": "11", "stale-b": "12"}[c.name]
				if rv == "" {
					t.Errorf("patched %s before the own pod; only stale-a and stale-b are stale leaders", c.name)
					continue
				}
				demoted[c.name] = true
				// The listed resourceVersion makes the demotion conditional.
				if c.typ != types.MergePatchType || !reflect.DeepEqual(c.body, wantPatch(Follower, rv)) {
					t.Errorf("demotion of %s = %s %v, want a merge patch %v", c.name, c.typ, c.body, wantPatch(Follower, rv))
				}
			}
			if len(demoted) != 2 {
				t.Errorf("demoted %v, want stale-a and stale-b", demoted)
			}
			for _, c := range f.patchCalls() {
				if c.name == "follower" || c.name == "other-app" {
					t.Errorf("patched %s, which is not a stale leader among the peers", c.name)
				}
			}

			wantRoles := map[string]string{self: "leader", "stale-a": "follower", "stale-b": "follower", "follower": "follower", "other-app": "leader"}
			for name, want := range wantRoles {
				if got := f.podLabels(t, name)[key]; got != want {
					t.Errorf("pod %s: %s=%q, want %q", name, key, got, want)
				}
			}
			if s := l.Status(); s.Demoted != 2 || s.PeerSelector != "app=web" || s.LastError != "" {
				t.Errorf("Status() = %+v, want 2 demoted, peer selector app=web, no error", s)
			}
			lists := f.listSelectors()
			if len(lists) == 0 {
				t.Errorf("peers were never listed")
			}
			for _, sel := range lists {
				if want := mustSelector(t, "app=web,role=leader"); sel != want {
					t.Errorf("listed peers with %q, want %q", sel, want)
				}
			}
		})
	}
}

func mustSelector(t *testing.T, s string) string {
	t.Helper()
	sel, err := labels.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return sel.String()
}

func TestPeerSelector(t *testing.T) {
	tests := []struct {
		name         string
		peerSelector string
		ownLabels    map[string]string
		peers        map[string]map[string]string // all say role=leader
		wantDemoted  []string
		wantSelector string // empty: repair is off
	}{
		{
			name:      "app.kubernetes.io/name comes first",
			ownLabels: map[string]string{"app.kubernetes.io/name": "web", "app": "legacy"},
			peers: map[string]map[string]string{
				"same-name": {"app.kubernetes.io/name": "web"},
				"same-app":  {"app": "legacy"},
			},
			wantDemoted:  []string{"same-name"},
			wantSelector: "app.kubernetes.io/name=web",
		},
		{
			name:      "app label",
			ownLabels: map[string]string{"app": "web"},
			peers: map[string]map[string]string{
				"same-app":  {"app": "web"},
				"other-app": {"app": "db"},
			},
			wantDemoted:  []string{"same-app"},
			wantSelector: "app=web",
		},
		{
			name:         "explicit selector wins over the own labels",
			peerSelector: "tier=cache",
			ownLabels:    map[string]string{"app": "web", "tier": "cache"},
			peers: map[string]map[string]string{
				"same-tier": {"tier": "cache"},
				"same-app":  {"app": "web"},
			},
			wantDemoted:  []string{"same-tier"},
			wantSelector: "tier=cache",
		},
		{
			name:      "no app labels and no selector: repair is off",
			ownLabels: map[string]string{"team": "x"},
			peers: map[string]map[string]string{
				"same-team": {"team": "x"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods := []*corev1.Pod{pod(self, "1", tt.ownLabels)}
			for name, peerLabels := range tt.peers {
				ls := map[string]string{key: "leader"}
				for k, v := range peerLabels {
					ls[k] = v
				}
				pods = append(pods, pod(name, "2", ls))
			}
			f := newFakePods(t, pods...)
			l := newLabeler(t, f, tt.peerSelector, nil)
			start(t, l)
			l.Set(Leader)
			waitRole(t, l, Leader)

			if got := f.podLabels(t, self)[key]; got != "leader" {
				t.Errorf("own pod %s=%q, want leader", key, got)
			}
			if s := l.Status(); s.PeerSelector != tt.wantSelector {
				t.Errorf("Status().PeerSelector = %q, want %q", s.PeerSelector, tt.wantSelector)
			}
			lists := f.listSelectors()
			switch {
			case tt.wantSelector == "" && len(lists) != 0:
				t.Errorf("repair is off but peers were listed with %q", lists)
			case tt.wantSelector != "" && len(lists) == 0:
				t.Errorf("peers were never listed")
			}
			for _, sel := range lists {
				if want := mustSelector(t, tt.wantSelector+",role=leader"); sel != want {
					t.Errorf("listed peers with %q, want %q", sel, want)
				}
			}
			for name := range tt.peers {
				want := "leader"
				if slices.Contains(tt.wantDemoted, name) {
					want = "follower"
				}
				if got := f.podLabels(t, name)[key]; got != want {
					t.Errorf("peer %s: %s=%q, want %q", name, key, got, want)
				}
			}
			for _, c := range f.patchCalls() {
				if c.name != self && !slices.Contains(tt.wantDemoted, c.name) {
					t.Errorf("patched %s, which is not a peer", c.name)
				}
			}
		})
	}
}

// TestDemotionConflictBlocksSelfLabel: a peer that keeps changing between
// list and patch may still say leader, so this pod does not label itself
// leader; it reports the error and keeps trying.
func TestDemotionConflictBlocksSelfLabel(t *testing.T) {
	f := newFakePods(t,
		pod(self, "1", map[string]string{"app": "web"}),
		pod("busy", "2", map[string]string{"app": "web", key: "leader"}),
	)
	f.setFailPatch(func(name string) error {
		if name == "busy" {
			return apierrors.NewConflict(corev1.Resource("pods"), name, errors.New("the object has been modified"))
		}
		return nil
	})
	l := newLabeler(t, f, "", nil)
	start(t, l)
	l.Set(Leader)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(l.Status().LastError, "peers changed during each of 3 attempts") {
		if time.Now().After(deadline) {
			t.Fatalf("Status() = %+v, want the repeated conflict reported", l.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := f.podLabels(t, self)[key]; got == "leader" {
		t.Errorf("labelled itself leader while peer busy may still say leader")
	}
	if got := f.podLabels(t, "busy")[key]; got != "leader" {
		t.Errorf("peer changed since the list was relabelled %q", got)
	}
	if lists := f.listSelectors(); len(lists) < 3 {
		t.Errorf("listed peers %d times, want at least 3 (a conflict re-lists)", len(lists))
	}

	// Once the peer holds still, it is demoted and this pod leads.
	f.setFailPatch(func(string) error { return nil })
	waitRole(t, l, Leader)
	if got := f.podLabels(t, "busy")[key]; got != "follower" {
		t.Errorf("peer busy = %q after it held still, want follower", got)
	}
}

func TestLatestSetWins(t *testing.T) {
	tests := []struct {
		name string
		// hold keeps the peer list of Set(Leader) waiting until Set(Follower).
		hold bool
	}{
		{name: "back to back"},
		{name: "follower asked while demoting peers", hold: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakePods(t,
				pod(self, "1", map[string]string{"app": "web"}),
				pod("peer", "2", map[string]string{"app": "web", key: "follower"}),
			)
			l := newLabeler(t, f, "", nil)
			start(t, l)
			waitRole(t, l, Follower)

			if tt.hold {
				entered, release := f.holdLists(t)
				l.Set(Leader)
				entered()
				l.Set(Follower)
				release()
			} else {
				l.Set(Leader)
				l.Set(Follower)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t.Cleanup(cancel)
			if err := l.Demote(ctx); err != nil {
				t.Fatalf("Demote: %v", err)
			}

			if got := f.podLabels(t, self)[key]; got != "follower" {
				t.Errorf("own pod %s=%q, want follower", key, got)
			}
			if s := l.Status(); s.Role != Follower || s.Want != Follower {
				t.Errorf("Status() = %+v, want follower written", s)
			}
			if tt.hold {
				for _, c := range f.patchCalls() {
					if c.name == self && reflect.DeepEqual(c.body, wantPatch(Leader, "")) {
						t.Errorf("own pod was labelled leader after it stepped down")
					}
				}
			}
		})
	}
}

// A leader label skipped because the pod stepped down meanwhile was never
// written, so Status must not report it.
func TestStatusRoleIsTheLabelWritten(t *testing.T) {
	f := newFakePods(t, pod(self, "1", map[string]string{"app": "web"}))
	l := newLabeler(t, f, "", nil)
	start(t, l)
	waitRole(t, l, Follower)

	entered, release := f.holdLists(t)
	l.Set(Leader)
	entered()
	l.Set(Follower)
	f.setFailPatch(forbidden)
	release()
	eventually(t, "the follower label failed", func() bool { return l.Status().LastError != "" })

	if s := l.Status(); s.Role != Follower {
		t.Errorf("Status().Role = %q, want %q: leader was never written", s.Role, Follower)
	}
	for _, c := range f.patchCalls() {
		if c.name == self && reflect.DeepEqual(c.body, wantPatch(Leader, "")) {
			t.Errorf("own pod was labelled leader after it stepped down")
		}
	}
}

func TestDemoteWritesFollower(t *testing.T) {
	f := newFakePods(t, pod(self, "1", map[string]string{"app": "web"}))
	l := newLabeler(t, f, "", nil)
	start(t, l)
	l.Set(Leader)
	waitRole(t, l, Leader)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	if err := l.Demote(ctx); err != nil {
		t.Fatalf("Demote: %v", err)
	}
	// Demote returns only once the label is written: no need to wait.
	if got := f.podLabels(t, self)[key]; got != "follower" {
		t.Errorf("own pod %s=%q after Demote, want follower", key, got)
	}
	if s := l.Status(); s.Role != Follower {
		t.Errorf("Status().Role = %q after Demote, want follower", s.Role)
	}
}

// The test runs in a synctest bubble: the back-off is in fake time, and Demote
// is known to be waiting before the first failure.
func TestDemoteReportsTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePods(t, pod(self, "1", map[string]string{"app": "web"}))
		f.setFailPatch(forbidden)
		var logs lockedBuffer
		l := newLabeler(t, f, "", slog.New(slog.NewTextHandler(&logs, nil)))

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		errc := make(chan error, 1)
		go func() { errc <- l.Demote(ctx) }()
		synctest.Wait() // Demote waits, before anything failed
		start(t, l)
		err := <-errc

		if err == nil {
			t.Fatal("Demote succeeded although every patch fails")
		}
		for _, want := range []string{self, "RBAC: patch denied"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("Demote error %q does not mention %q", err, want)
			}
		}
		s := l.Status()
		if !strings.Contains(s.LastError, "RBAC: patch denied") || s.Role != "" {
			t.Errorf("Status() = %+v, want the patch error and no role written", s)
		}
		if n := len(f.patchCalls()); n < 3 {
			t.Fatalf("%d patch attempts in 10s, want retries", n)
		}
		if n := logs.count("role label error"); n != 1 {
			t.Errorf("logged the error %d times over %d attempts, want once", n, len(f.patchCalls()))
		}
	})
}

func TestLabelErrorRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakePods(t, pod(self, "1", map[string]string{"app": "web"}))
		f.setFailPatch(forbidden)
		var logs lockedBuffer
		l := newLabeler(t, f, "", slog.New(slog.NewTextHandler(&logs, nil)))
		start(t, l)
		time.Sleep(5 * time.Second) // fake time: several failed attempts
		if n := len(f.patchCalls()); n < 3 {
			t.Fatalf("%d patch attempts, want retries", n)
		}
		if s := l.Status(); s.LastError == "" {
			t.Fatalf("Status().LastError is empty while patches fail")
		}

		f.setFailPatch(nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Demote(ctx); err != nil {
			t.Fatalf("Demote after recovery: %v", err)
		}
		if s := l.Status(); s.LastError != "" || s.Role != Follower {
			t.Errorf("Status() = %+v, want follower written and the error cleared", s)
		}
		if got := f.podLabels(t, self)[key]; got != "follower" {
			t.Errorf("own pod %s=%q, want follower", key, got)
		}
		if n := logs.count("role label error"); n != 1 {
			t.Errorf("logged the error %d times, want once", n)
		}
		if n := logs.count("role label recovered"); n != 1 {
			t.Errorf("logged the recovery %d times, want once", n)
		}
	})
}
