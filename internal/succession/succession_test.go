package succession

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	"github.com/leader-elector/leader-elector/internal/testutil"
)

// retirements records the calls of Config.Retire.
type retirements struct {
	mu  sync.Mutex
	got []string
}

func (r *retirements) retire(_ context.Context, to, podIP string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, strings.TrimSuffix(to+" at "+podIP, " at "))
	return nil
}

func (r *retirements) calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.got...)
}

// start runs a Succession over a fake API holding pods, leading.
func start(t *testing.T, cfg Config, pods ...*corev1.Pod) (*Succession, *fake.Clientset, *retirements) {
	t.Helper()
	objs := make([]runtime.Object, 0, len(pods))
	for _, p := range pods {
		p.Namespace = "ns"
		objs = append(objs, p)
	}
	client := fake.NewClientset(objs...)
	r := &retirements{}
	cfg.Pods, cfg.Retire, cfg.Log = client.CoreV1().Pods("ns"), r.retire, slog.New(slog.DiscardHandler)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	s.SetLeading(true)
	return s, client, r
}

func markDeleted(t *testing.T, client *fake.Clientset, name string) {
	t.Helper()
	p, err := client.CoreV1().Pods("ns").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if _, err := client.CoreV1().Pods("ns").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestDeletionHandsOverToTheChoice(t *testing.T) {
	_, client, r := start(t, Config{Pod: "me", ByPodName: true},
		pod("me", "old", 0, 1), pod("old-2", "old", 0, 1), pod("new-1", "new", 10, 11))
	time.Sleep(100 * time.Millisecond) // the informer syncs; nothing is deleted
	if got := r.calls(); len(got) != 0 {
		t.Fatalf("retired before any deletion: %v", got)
	}
	markDeleted(t, client, "me")
	testutil.Eventually(t, 10*time.Millisecond, 5*time.Second, "no retirement after the own pod's deletionTimestamp", func() bool { return len(r.calls()) > 0 })
	markDeleted(t, client, "old-2") // later events retire nothing more
	time.Sleep(100 * time.Millisecond)
	if got := r.calls(); len(got) != 1 || got[0] != "new-1 at ip-of-new-1" {
		t.Errorf("retirements = %q, want one, to new-1 at its pod IP", got)
	}
}

func TestDeletionWithoutPodNamesReleases(t *testing.T) {
	_, client, r := start(t, Config{Pod: "me", ByPodName: false}, pod("me", "a", 0, 1), pod("b", "a", 0, 1))
	time.Sleep(100 * time.Millisecond)
	markDeleted(t, client, "me")
	testutil.Eventually(t, 10*time.Millisecond, 5*time.Second, "no retirement", func() bool { return len(r.calls()) > 0 })
	if got := r.calls(); got[0] != "" {
		t.Errorf("retired naming %q; without pod names as identities it must release", got[0])
	}
}

func TestPodGoneRetires(t *testing.T) {
	_, client, r := start(t, Config{Pod: "me", ByPodName: true}, pod("me", "a", 0, 1), pod("b", "a", 0, 1))
	time.Sleep(100 * time.Millisecond)
	if err := client.CoreV1().Pods("ns").Delete(context.Background(), "me", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Millisecond, 5*time.Second, "no retirement after the own pod was deleted at once", func() bool { return len(r.calls()) > 0 })
	if got := r.calls(); got[0] != "b at ip-of-b" {
		t.Errorf("retired naming %q, want b at its pod IP", got[0])
	}
}

func TestOwnPodOutsideThePeersRetiresNever(t *testing.T) {
	sel := labels.SelectorFromSet(labels.Set{"app": "other"})
	s, client, r := start(t, Config{Pod: "me", ByPodName: true, PeerSelector: sel}, pod("me", "a", 0, 1), pod("b", "a", 0, 1))
	testutil.Eventually(t, 10*time.Millisecond, 5*time.Second, "no error for a selector that misses the own pod", func() bool { return s.LastError() != "" })
	if !strings.Contains(s.LastError(), "PEER_SELECTOR") {
		t.Errorf("error = %q, want it to name PEER_SELECTOR", s.LastError())
	}
	markDeleted(t, client, "b")
	time.Sleep(100 * time.Millisecond)
	if got := r.calls(); len(got) != 0 {
		t.Errorf("retired %v", got)
	}
}

func TestFollowerWatchesNothing(t *testing.T) {
	s, client, r := start(t, Config{Pod: "me", ByPodName: true}, pod("me", "a", 0, 1), pod("b", "a", 0, 1))
	time.Sleep(100 * time.Millisecond)
	s.SetLeading(false)
	time.Sleep(100 * time.Millisecond)
	before := len(client.Actions())
	markDeleted(t, client, "me")
	time.Sleep(200 * time.Millisecond)
	if got := r.calls(); len(got) != 0 {
		t.Errorf("a follower retired: %v", got)
	}
	if after := len(client.Actions()); after != before+2 { // the test's own get and update
		t.Errorf("a follower made %d requests", after-before-2)
	}
}

// TestBrokenWatchIsStartedAgainSoon: while every watch of the pods fails
// (a revoked permission, an API server that is down), the deletion is
// still seen within about a second, by the list of a watch started again
// on succession's own short back-off, not client-go's reflector's, which
// grows to 30 s (from the fourth failure on it waits 6.4 s or more).
func TestBrokenWatchIsStartedAgainSoon(t *testing.T) {
	objs := []runtime.Object{pod("me", "a", 0, 1), pod("b", "a", 0, 1)}
	for _, o := range objs {
		o.(*corev1.Pod).Namespace = "ns"
	}
	client := fake.NewClientset(objs...)
	var watches atomic.Int32
	client.PrependWatchReactor("pods", func(clienttesting.Action) (bool, watch.Interface, error) {
		watches.Add(1)
		return true, nil, apierrors.NewForbidden(corev1.Resource("pods"), "", errors.New("watch revoked"))
	})
	r := &retirements{}
	s, err := New(Config{Pod: "me", ByPodName: true, Pods: client.CoreV1().Pods("ns"), Retire: r.retire, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	s.SetLeading(true)
	time.Sleep(8 * time.Second) // failed watches enough to grow the reflector's back-off past 3 s
	markDeleted(t, client, "me")
	deleted := time.Now()
	testutil.Eventually(t, 10*time.Millisecond, 5*time.Second, "no retirement while the watch fails", func() bool { return len(r.calls()) > 0 })
	if took := time.Since(deleted); took > 1500*time.Millisecond {
		t.Errorf("the deletion was seen %s after it, with every watch failing (%d watches); want within the 1 s cap of the back-off", took, watches.Load())
	}
	if got := r.calls(); got[0] != "b at ip-of-b" {
		t.Errorf("retired naming %q, want b at its pod IP", got[0])
	}
}
