package labeler

import (
	"context"
	"errors"
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
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	clocktesting "k8s.io/utils/clock/testing"
)

// The tests run in synctest bubbles: back-off is in fake time, and
// synctest.Wait returns once every goroutine of the labelers, their informers
// and the fake API server is idle, so "nothing more happens" can be asserted.

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
			if s.PeerSelector != tt.wantSelector || s.Want != Follower || s.Role != "" || s.Watching {
				t.Errorf("Status() = %+v, want follower wanted, nothing written, not watching, peer selector %q", s, tt.wantSelector)
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
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, pod(self, tt.labels), pod("peer", map[string]string{"app": "web", key: "leader"}))
				l := newLabeler(t, c.client(self), self, "", nil)
				start(t, l)
				synctest.Wait()

				want := map[string]string{"app": "web", "keep": "me", key: "follower"}
				if got := c.get(self).Labels; !reflect.DeepEqual(got, want) {
					t.Errorf("own pod labels = %v, want %v", got, want)
				}
				calls := c.callsBy(self, 0)
				if len(calls) != 1 || !isPatch(calls[0], self, Follower) || !reflect.DeepEqual(calls[0].body, wantPatch(Follower, "")) {
					t.Fatalf("requests = %+v, want exactly one merge patch of %s with %v", calls, self, wantPatch(Follower, ""))
				}
				if s := l.Status(); s.Role != Follower || s.Watching {
					t.Errorf("Status() = %+v, want follower written and no watch", s)
				}
			})
		})
	}
}

// TestFollowerMakesNoRequests: once its label is written, a follower sends
// nothing, whatever happens to the pods; after stepping down it stops
// watching, so it no longer repairs anything.
func TestFollowerMakesNoRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod(self, map[string]string{"app": "web"}), pod("peer", map[string]string{"app": "web"}))
		l := newLabeler(t, c.client(self), self, "", nil)
		start(t, l)
		synctest.Wait()
		c.setLabel("peer", key, ptr("leader"))
		c.setLabel(self, key, nil)
		time.Sleep(time.Hour)
		synctest.Wait()
		if calls := c.callsBy(self, 1); len(calls) != 0 {
			t.Errorf("a follower sent %+v after its label was written, want nothing", calls)
		}

		l.Set(Leader)
		synctest.Wait()
		if got := c.role(self); got != "leader" {
			t.Fatalf("own pod %s=%q, want leader", key, got)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Demote(ctx); err != nil {
			t.Fatalf("Demote: %v", err)
		}
		synctest.Wait()
		if s := l.Status(); s.Watching || s.Role != Follower {
			t.Errorf("Status() = %+v after Demote, want follower and no watch", s)
		}
		n := len(c.callsBy(self, 0))
		c.setLabel(self, key, nil)
		c.setLabel("peer", key, ptr("leader"))
		time.Sleep(time.Hour)
		synctest.Wait()
		if calls := c.callsBy(self, n); len(calls) != 0 {
			t.Errorf("after stepping down it sent %+v, want nothing", calls)
		}
	})
}

func TestSetLeaderDemotesStalePeersFirst(t *testing.T) {
	tests := []struct {
		name      string
		ownLabels map[string]string
		// early asks for leader before Run starts, so that no follower label
		// is written first.
		early bool
	}{
		{name: "from follower", ownLabels: map[string]string{"app": "web"}},
		{name: "own pod still says leader", ownLabels: map[string]string{"app": "web", key: "leader"}, early: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t,
					pod(self, tt.ownLabels),
					pod("stale-a", map[string]string{"app": "web", key: "leader"}),
					pod("stale-b", map[string]string{"app": "web", key: "leader"}),
					pod("follower", map[string]string{"app": "web", key: "follower"}),
					pod("other-app", map[string]string{"app": "db", key: "leader"}),
				)
				listed := map[string]string{}
				for _, name := range []string{"stale-a", "stale-b"} {
					listed[name] = c.get(name).ResourceVersion
				}
				l := newLabeler(t, c.client(self), self, "", nil)
				before := 0 // requests before Set(Leader)
				if tt.early {
					l.Set(Leader)
					start(t, l)
				} else {
					start(t, l)
					synctest.Wait()
					before = len(c.callsBy(self, 0))
					l.Set(Leader)
				}
				synctest.Wait()

				var patches []call
				for _, cl := range c.callsBy(self, before) {
					switch cl.verb {
					case "patch":
						patches = append(patches, cl)
					case "list", "watch":
						if cl.selector != "app=web" {
							t.Errorf("%s of peers with %q, want app=web", cl.verb, cl.selector)
						}
					}
				}
				if len(patches) != 3 {
					t.Fatalf("patches after Set(Leader) = %+v, want two demotions and the own pod", patches)
				}
				if last := patches[2]; !isPatch(last, self, Leader) || !reflect.DeepEqual(last.body, wantPatch(Leader, "")) {
					t.Errorf("last patch = %+v, want the own pod labelled leader", last)
				}
				demoted := map[string]bool{}
				for _, cl := range patches[:2] {
					rv, ok := listed[cl.name]
					if !ok {
						t.Errorf("patched %s before the own pod; only stale-a and stale-b are stale leaders", cl.name)
						continue
					}
					demoted[cl.name] = true
					// The read resourceVersion makes the demotion conditional.
					if !reflect.DeepEqual(cl.body, wantPatch(Follower, rv)) {
						t.Errorf("demotion of %s = %v, want %v", cl.name, cl.body, wantPatch(Follower, rv))
					}
				}
				if len(demoted) != 2 {
					t.Errorf("demoted %v, want stale-a and stale-b", demoted)
				}
				wantRoles := map[string]string{self: "leader", "stale-a": "follower", "stale-b": "follower", "follower": "follower", "other-app": "leader"}
				for name, want := range wantRoles {
					if got := c.role(name); got != want {
						t.Errorf("pod %s: %s=%q, want %q", name, key, got, want)
					}
				}
				if s := l.Status(); s.Demoted != 2 || s.Restored != 0 || s.PeerSelector != "app=web" || s.LastError != "" || !s.Watching || s.Role != Leader {
					t.Errorf("Status() = %+v, want leader written, 2 demoted, none restored, peer selector app=web, watching, no error", s)
				}
			})
		})
	}
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
			name:      "another release of the same chart is no peer",
			ownLabels: map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "a"},
			peers: map[string]map[string]string{
				"release-a": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "a"},
				"release-b": {"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": "b"},
			},
			wantDemoted:  []string{"release-a"},
			wantSelector: "app.kubernetes.io/instance=a,app.kubernetes.io/name=web",
		},
		{
			name:      "app label and instance",
			ownLabels: map[string]string{"app": "web", "app.kubernetes.io/instance": "a"},
			peers: map[string]map[string]string{
				"release-a": {"app": "web", "app.kubernetes.io/instance": "a"},
				"release-b": {"app": "web", "app.kubernetes.io/instance": "b"},
			},
			wantDemoted:  []string{"release-a"},
			wantSelector: "app=web,app.kubernetes.io/instance=a",
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
			synctest.Test(t, func(t *testing.T) {
				pods := []*corev1.Pod{pod(self, tt.ownLabels)}
				for name, peerLabels := range tt.peers {
					ls := map[string]string{key: "leader"}
					for k, v := range peerLabels {
						ls[k] = v
					}
					pods = append(pods, pod(name, ls))
				}
				c := newCluster(t, pods...)
				l := newLabeler(t, c.client(self), self, tt.peerSelector, nil)
				start(t, l)
				l.Set(Leader)
				synctest.Wait()

				if got := c.role(self); got != "leader" {
					t.Errorf("own pod %s=%q, want leader", key, got)
				}
				if s := l.Status(); s.PeerSelector != tt.wantSelector {
					t.Errorf("Status().PeerSelector = %q, want %q", s.PeerSelector, tt.wantSelector)
				}
				wantSel := tt.wantSelector
				if wantSel == "" {
					// Repair off: only the own pod is watched.
					wantSel = "fields:metadata.name=" + self
				} else {
					wantSel = mustSelector(t, wantSel)
				}
				for _, verb := range []string{"list", "watch"} {
					calls := c.callsOf(self, verb)
					if len(calls) == 0 {
						t.Errorf("no %s of the peers", verb)
					}
					for _, cl := range calls {
						if cl.selector != wantSel {
							t.Errorf("%s with %q, want %q", verb, cl.selector, wantSel)
						}
					}
				}
				for name := range tt.peers {
					want := "leader"
					if slices.Contains(tt.wantDemoted, name) {
						want = "follower"
					}
					if got := c.role(name); got != want {
						t.Errorf("peer %s: %s=%q, want %q", name, key, got, want)
					}
				}
				for _, cl := range c.callsOf(self, "patch") {
					if cl.name != self && !slices.Contains(tt.wantDemoted, cl.name) {
						t.Errorf("patched %s, which is not a peer", cl.name)
					}
				}
			})
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

// TestLeaderKeepsLabelsRight: while it leads, the labeler puts its own label
// back when someone removes or changes it, and demotes a peer that says
// leader, from the watch and without polling; pods that are no peers are
// never touched.
func TestLeaderKeepsLabelsRight(t *testing.T) {
	tests := []struct {
		name string
		// change is what someone else does to the pods.
		change       func(c *cluster)
		wantRoles    map[string]string
		wantDemoted  int
		wantRestored int
		// wantRepairs is what Config.OnRepair is told, in order.
		wantRepairs []Repair
	}{
		{
			name:         "own label removed",
			change:       func(c *cluster) { c.setLabel(self, key, nil) },
			wantRoles:    map[string]string{self: "leader", "peer": "follower"},
			wantRestored: 1,
			wantRepairs:  []Repair{{Pod: self, UID: "uid-self", From: "", To: "leader"}},
		},
		{
			name:         "own label set to follower",
			change:       func(c *cluster) { c.setLabel(self, key, ptr("follower")) },
			wantRoles:    map[string]string{self: "leader", "peer": "follower"},
			wantRestored: 1,
			wantRepairs:  []Repair{{Pod: self, UID: "uid-self", From: "follower", To: "leader"}},
		},
		{
			name:        "a peer labelled leader",
			change:      func(c *cluster) { c.setLabel("peer", key, ptr("leader")) },
			wantRoles:   map[string]string{self: "leader", "peer": "follower"},
			wantDemoted: 1,
			wantRepairs: []Repair{{Pod: "peer", UID: "uid-peer", From: "leader", To: "follower"}},
		},
		{
			name: "both at once",
			change: func(c *cluster) {
				c.setLabel("peer", key, ptr("leader"))
				c.setLabel(self, key, nil)
			},
			wantRoles:    map[string]string{self: "leader", "peer": "follower"},
			wantDemoted:  1,
			wantRestored: 1,
			// Peers first: the own label only once no peer says leader.
			wantRepairs: []Repair{{Pod: "peer", UID: "uid-peer", From: "leader", To: "follower"}, {Pod: self, UID: "uid-self", From: "", To: "leader"}},
		},
		{
			name:      "another release's pod labelled leader",
			change:    func(c *cluster) { c.setLabel("other-release", key, ptr("leader")) },
			wantRoles: map[string]string{self: "leader", "peer": "follower", "other-release": "leader"},
		},
		{
			name:      "other labels of the own pod change",
			change:    func(c *cluster) { c.setLabel(self, "version", ptr("2")) },
			wantRoles: map[string]string{self: "leader", "peer": "follower"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				web := func(instance string) map[string]string {
					return map[string]string{"app.kubernetes.io/name": "web", "app.kubernetes.io/instance": instance, key: "follower"}
				}
				pods := []*corev1.Pod{pod(self, web("a")), pod("peer", web("a")), pod("other-release", web("b"))}
				for _, p := range pods {
					p.UID = types.UID("uid-" + p.Name)
				}
				c := newCluster(t, pods...)
				var logs lockedBuffer
				var mu sync.Mutex
				var repairs []Repair
				l, err := New(Config{Pods: c.client(self), Pod: self, Key: key, Log: slog.New(slog.NewTextHandler(&logs, nil)),
					OnRepair: func(r Repair) {
						mu.Lock()
						repairs = append(repairs, r)
						mu.Unlock()
					}})
				if err != nil {
					t.Fatal(err)
				}
				start(t, l)
				l.Set(Leader)
				synctest.Wait()
				if s := l.Status(); !s.Watching || s.Role != Leader {
					t.Fatalf("Status() = %+v, want leader written and watching", s)
				}
				lists := len(c.callsOf(self, "list"))

				tt.change(c)
				synctest.Wait()

				for name, want := range tt.wantRoles {
					if got := c.role(name); got != want {
						t.Errorf("pod %s: %s=%q, want %q", name, key, got, want)
					}
				}
				if s := l.Status(); s.Demoted != tt.wantDemoted || s.Restored != tt.wantRestored || s.LastError != "" {
					t.Errorf("Status() = %+v, want %d demoted, %d restored, no error", s, tt.wantDemoted, tt.wantRestored)
				}
				if n := logs.count("put the own role label back"); n != tt.wantRestored {
					t.Errorf("logged %d restores, want %d", n, tt.wantRestored)
				}
				mu.Lock()
				if !slices.Equal(repairs, tt.wantRepairs) {
					t.Errorf("OnRepair got %+v, want %+v", repairs, tt.wantRepairs)
				}
				mu.Unlock()
				if n := len(c.callsOf(self, "list")); n != lists {
					t.Errorf("listed %d more times, want the watch alone to tell", n-lists)
				}
				for _, cl := range c.callsOf(self, "patch") {
					if cl.name == "other-release" {
						t.Errorf("patched %s of another release: %v", cl.name, cl.body)
					}
				}
				// Settled: an hour later nothing more was sent.
				n := len(c.callsBy(self, 0))
				time.Sleep(time.Hour)
				synctest.Wait()
				if calls := c.callsBy(self, n); len(calls) != 0 {
					t.Errorf("sent %+v with nothing to repair", calls)
				}
			})
		})
	}
}

// TestStepDownCancelsLeaderWork: A's read of its
// peers is slow; A steps down, B leads and labels itself; then A's read
// returns and shows B as leader. A must not demote B: stepping down cancels
// A's in-flight request at once, and, for a transport that answers anyway,
// A checks that it still leads before every patch.
func TestStepDownCancelsLeaderWork(t *testing.T) {
	for _, ignoreCtx := range []bool{false, true} {
		name := "request cancelled"
		if ignoreCtx {
			name = "request answered anyway"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t, pod("a", map[string]string{"app": "web"}), pod("b", map[string]string{"app": "web"}))
				ca, cb := c.client("a"), c.client("b")
				ca.ignoreCtx = ignoreCtx
				a, b := newLabeler(t, ca, "a", "", nil), newLabeler(t, cb, "b", "", nil)
				start(t, a)
				start(t, b)
				synctest.Wait()

				slow := ca.holdNext(t, "list")
				a.Set(Leader)
				<-slow.entered
				a.Set(Follower) // A steps down while its list is out
				b.Set(Leader)
				synctest.Wait()
				if got := c.role("b"); got != "leader" {
					t.Fatalf("b %s=%q after it took over, want leader", key, got)
				}
				n := len(c.callsBy("a", 0))
				slow.release() // A's list returns, with B labelled leader
				synctest.Wait()

				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := a.Demote(ctx); err != nil {
					t.Fatalf("Demote of a: %v", err)
				}
				for _, cl := range c.callsBy("a", n) {
					if cl.verb == "patch" && !isPatch(cl, "a", Follower) {
						t.Errorf("a sent %+v after it stepped down", cl)
					}
				}
				if got := c.role("b"); got != "leader" {
					t.Errorf("b %s=%q: the replica that stepped down demoted the new leader", key, got)
				}
				if got := c.role("a"); got != "follower" {
					t.Errorf("a %s=%q, want follower", key, got)
				}
				if s := b.Status(); s.Restored != 0 || s.Demoted != 0 {
					t.Errorf("b's Status() = %+v, want nothing to repair", s)
				}
			})
		})
	}
}

// TestStaleLeaderPatchIsHealed: A's own role=leader
// patch is slow and lands after B labelled itself. Stepping down does not
// wait for it (its request is cancelled), and B, which watches its peers
// while it leads, demotes A once the late patch lands.
func TestStaleLeaderPatchIsHealed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod("a", map[string]string{"app": "web"}), pod("b", map[string]string{"app": "web"}))
		ca, cb := c.client("a"), c.client("b")
		a, b := newLabeler(t, ca, "a", "", nil), newLabeler(t, cb, "b", "", nil)
		start(t, a)
		start(t, b)
		synctest.Wait()

		late := ca.holdNext(t, "patch")
		a.Set(Leader)
		<-late.entered
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Demote(ctx); err != nil {
			t.Fatalf("Demote of a waited for its slow leader patch: %v", err)
		}
		b.Set(Leader)
		synctest.Wait()
		if got := c.role("b"); got != "leader" {
			t.Fatalf("b %s=%q after it took over, want leader", key, got)
		}

		late.release() // A's leader patch lands now
		synctest.Wait()
		if got := c.role("a"); got != "follower" {
			t.Errorf("a %s=%q after its late leader patch, want follower: two pods say leader", key, got)
		}
		if got := c.role("b"); got != "leader" {
			t.Errorf("b %s=%q, want leader", key, got)
		}
		if s := b.Status(); s.Demoted != 1 {
			t.Errorf("b's Status() = %+v, want a demoted once", s)
		}
	})
}

// TestNoPatchAfterSteppingDown: a term that steps down between two patches
// sends no further one, even if the request in flight is answered.
func TestNoPatchAfterSteppingDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t,
			pod(self, map[string]string{"app": "web"}),
			pod("stale-1", map[string]string{"app": "web", key: "leader"}),
			pod("stale-2", map[string]string{"app": "web", key: "leader"}),
		)
		cl := c.client(self)
		cl.ignoreCtx = true
		l := newLabeler(t, cl, self, "", nil)
		start(t, l)
		synctest.Wait()
		n := len(c.callsBy(self, 0))

		first := cl.holdNext(t, "patch")
		l.Set(Leader)
		<-first.entered
		l.Set(Follower)
		first.release()
		synctest.Wait()

		var patches []call
		for _, cl := range c.callsBy(self, n) {
			if cl.verb == "patch" {
				patches = append(patches, cl)
			}
		}
		if len(patches) != 2 || isPatch(patches[0], self, Leader) || !isPatch(patches[1], self, Follower) {
			t.Errorf("patches = %+v, want the one demotion in flight, then the own follower label", patches)
		}
		if got := c.role(self); got != "follower" {
			t.Errorf("own pod %s=%q, want follower", key, got)
		}
	})
}

// TestDemotionConflictBlocksSelfLabel: a peer that keeps changing between
// read and patch may still say leader, so this pod does not label itself
// leader; it reports the error and keeps trying, with back-off.
func TestDemotionConflictBlocksSelfLabel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t,
			pod(self, map[string]string{"app": "web"}),
			pod("busy", map[string]string{"app": "web", key: "leader"}),
		)
		cl := c.client(self)
		cl.setFail(func(verb, name string) error {
			if verb == "patch" && name == "busy" {
				return apierrors.NewConflict(corev1.Resource("pods"), name, errors.New("the object has been modified"))
			}
			return nil
		})
		var logs lockedBuffer
		l := newLabeler(t, cl, self, "", slog.New(slog.NewTextHandler(&logs, nil)))
		start(t, l)
		l.Set(Leader)
		time.Sleep(10 * time.Second) // fake time: several attempts
		synctest.Wait()

		if s := l.Status(); !strings.Contains(s.LastError, "demote stale leader label on pod busy: it changed since it was read") {
			t.Errorf("Status() = %+v, want the conflict reported", s)
		}
		if got := c.role(self); got == "leader" {
			t.Errorf("labelled itself leader while peer busy may still say leader")
		}
		attempts := 0
		for _, call := range c.callsOf(self, "patch") {
			if call.name == "busy" {
				attempts++
			}
		}
		// Back-off from 200ms, doubling, with up to 20% jitter: 6 in 10s.
		if attempts < 3 || attempts > 8 {
			t.Errorf("%d demotion attempts in 10s, want a few, spaced by back-off", attempts)
		}
		if n := logs.count("role label error"); n != 1 {
			t.Errorf("logged the error %d times, want once", n)
		}

		// Once the peer holds still, it is demoted and this pod leads.
		cl.setFail(nil)
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := c.role("busy"); got != "follower" {
			t.Errorf("peer busy = %q after it held still, want follower", got)
		}
		if got := c.role(self); got != "leader" {
			t.Errorf("own pod %s=%q, want leader", key, got)
		}
		if s := l.Status(); s.LastError != "" || s.Role != Leader {
			t.Errorf("Status() = %+v, want leader written and the error cleared", s)
		}
	})
}

func TestLatestSetWins(t *testing.T) {
	tests := []struct {
		name string
		// hold keeps the peer list of Set(Leader) waiting until Set(Follower).
		hold bool
	}{
		{name: "back to back"},
		{name: "follower asked while reading the peers", hold: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				c := newCluster(t,
					pod(self, map[string]string{"app": "web"}),
					pod("peer", map[string]string{"app": "web", key: "follower"}),
				)
				cl := c.client(self)
				l := newLabeler(t, cl, self, "", nil)
				start(t, l)
				synctest.Wait()

				if tt.hold {
					h := cl.holdNext(t, "list")
					l.Set(Leader)
					<-h.entered
					l.Set(Follower)
					h.release()
				} else {
					l.Set(Leader)
					l.Set(Follower)
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if err := l.Demote(ctx); err != nil {
					t.Fatalf("Demote: %v", err)
				}
				synctest.Wait()

				if got := c.role(self); got != "follower" {
					t.Errorf("own pod %s=%q, want follower", key, got)
				}
				if s := l.Status(); s.Role != Follower || s.Want != Follower || s.Watching {
					t.Errorf("Status() = %+v, want follower written, no watch", s)
				}
				for _, call := range c.callsOf(self, "patch") {
					if isPatch(call, self, Leader) {
						t.Errorf("own pod was labelled leader after it stepped down")
					}
				}
			})
		})
	}
}

// A leader label skipped because the pod stepped down meanwhile was never
// written, so Status must not report it.
func TestStatusRoleIsTheLabelWritten(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod(self, map[string]string{"app": "web"}))
		cl := c.client(self)
		l := newLabeler(t, cl, self, "", nil)
		start(t, l)
		synctest.Wait()

		h := cl.holdNext(t, "list")
		l.Set(Leader)
		<-h.entered
		l.Set(Follower)
		cl.setFail(func(verb, name string) error {
			if verb == "patch" {
				return forbidden(name)
			}
			return nil
		})
		h.release()
		time.Sleep(time.Second)
		synctest.Wait()

		if s := l.Status(); s.Role != Follower || s.LastError == "" {
			t.Errorf("Status() = %+v, want role %q (leader was never written) and the failed follower label reported", s, Follower)
		}
		for _, call := range c.callsOf(self, "patch") {
			if isPatch(call, self, Leader) {
				t.Errorf("own pod was labelled leader after it stepped down")
			}
		}
	})
}

func TestDemoteWritesFollower(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod(self, map[string]string{"app": "web"}))
		l := newLabeler(t, c.client(self), self, "", nil)
		start(t, l)
		l.Set(Leader)
		synctest.Wait()
		if got := c.role(self); got != "leader" {
			t.Fatalf("own pod %s=%q, want leader", key, got)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := l.Demote(ctx); err != nil {
			t.Fatalf("Demote: %v", err)
		}
		// Demote returns only once the label is written: no need to wait.
		if got := c.role(self); got != "follower" {
			t.Errorf("own pod %s=%q after Demote, want follower", key, got)
		}
		if s := l.Status(); s.Role != Follower {
			t.Errorf("Status().Role = %q after Demote, want follower", s.Role)
		}
	})
}

// Demote is known to be waiting before the first failure.
func TestDemoteReportsTheLastError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod(self, map[string]string{"app": "web"}))
		cl := c.client(self)
		cl.setFail(func(verb, name string) error { return forbidden(name) })
		var logs lockedBuffer
		l := newLabeler(t, cl, self, "", slog.New(slog.NewTextHandler(&logs, nil)))

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
		if n := len(c.callsOf(self, "patch")); n < 3 {
			t.Fatalf("%d patch attempts in 10s, want retries", n)
		}
		if n := logs.count("role label error"); n != 1 {
			t.Errorf("logged the error %d times over %d attempts, want once", n, len(c.callsOf(self, "patch")))
		}
	})
}

func TestLabelErrorRecovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod(self, map[string]string{"app": "web"}))
		cl := c.client(self)
		cl.setFail(func(verb, name string) error { return forbidden(name) })
		var logs lockedBuffer
		l := newLabeler(t, cl, self, "", slog.New(slog.NewTextHandler(&logs, nil)))
		start(t, l)
		time.Sleep(5 * time.Second) // fake time: several failed attempts
		if n := len(c.callsOf(self, "patch")); n < 3 {
			t.Fatalf("%d patch attempts, want retries", n)
		}
		if s := l.Status(); s.LastError == "" {
			t.Fatalf("Status().LastError is empty while patches fail")
		}

		cl.setFail(nil)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := l.Demote(ctx); err != nil {
			t.Fatalf("Demote after recovery: %v", err)
		}
		if s := l.Status(); s.LastError != "" || s.Role != Follower {
			t.Errorf("Status() = %+v, want follower written and the error cleared", s)
		}
		if got := c.role(self); got != "follower" {
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

// TestWatchErrorIsReported: a leader that cannot watch its peers says so
// once, in the log and in Status, and the watch recovers by itself, within
// about two seconds of being allowed again.
func TestWatchErrorIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod(self, map[string]string{"app": "web"}), pod("peer", map[string]string{"app": "web"}))
		cl := c.client(self)
		cl.setFail(func(verb, name string) error {
			if verb == "watch" {
				return apierrors.NewForbidden(corev1.Resource("pods"), "", errors.New("RBAC: watch denied"))
			}
			return nil
		})
		var logs lockedBuffer
		l := newLabeler(t, cl, self, "", slog.New(slog.NewTextHandler(&logs, nil)))
		start(t, l)
		l.Set(Leader)
		time.Sleep(time.Minute) // fake time: the informer retries with back-off
		synctest.Wait()
		s := l.Status()
		if !strings.Contains(s.WatchError, "watch peer pods \"app=web\"") || !strings.Contains(s.WatchError, "forbidden") {
			t.Errorf("Status().WatchError = %q, want the forbidden watch named", s.WatchError)
		}
		if n := logs.count("cannot watch the peer pods"); n != 1 {
			t.Errorf("logged the watch error %d times, want once", n)
		}
		// A list and a watch about two seconds apart (rewatch, 20%
		// jitter): no tighter, and no longer, so that a permission given
		// back is seen within about two seconds.
		watches := len(c.callsOf(self, "watch"))
		if watches < 24 || watches > 40 {
			t.Errorf("%d watch attempts in a minute, want one every 1.6-2.4 s", watches)
		}

		// A minute of refusals grew the reflector's own back-off to 30 s;
		// the watch starts again within rewatch's 2.4 s instead.
		cl.setFail(nil)
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		if s := l.Status(); s.WatchError != "" || !s.Watching || s.Role != Leader {
			t.Errorf("Status() 2.5 s after the watch was allowed again = %+v, want leader, watching, no watch error", s)
		}
		c.setLabel("peer", key, ptr("leader"))
		synctest.Wait()
		if got := c.role("peer"); got != "follower" {
			t.Errorf("peer %s=%q once the watch works, want follower", key, got)
		}
		if n := logs.count("watching the peer pods again"); n != 1 {
			t.Errorf("logged the recovery %d times, want once", n)
		}
	})
}

// TestBackoffUsesTheClock: the back-off between attempts is timed by
// Config.Clock, not by the runtime's timers.
func TestBackoffUsesTheClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newCluster(t, pod(self, map[string]string{"app": "web"}))
		cl := c.client(self)
		cl.setFail(func(verb, name string) error { return forbidden(name) })
		clk := clocktesting.NewFakeClock(time.Now())
		l, err := New(Config{Pods: cl, Pod: self, Key: key, Clock: clk, Log: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		start(t, l)
		time.Sleep(time.Hour) // the runtime's time passes; the clock's does not
		synctest.Wait()
		if n := len(c.callsOf(self, "patch")); n != 1 {
			t.Fatalf("%d attempts while the clock stood still, want 1", n)
		}
		if !clk.HasWaiters() {
			t.Fatal("the back-off does not wait on Config.Clock")
		}
		cl.setFail(nil)
		clk.Step(10 * time.Second) // at least the longest first step
		synctest.Wait()
		if n := len(c.callsOf(self, "patch")); n != 2 {
			t.Errorf("%d attempts after the clock moved past the back-off, want 2", n)
		}
		if got := c.role(self); got != "follower" {
			t.Errorf("own pod %s=%q, want follower", key, got)
		}
	})
}

// TestNoPatchOnceConfigLeadingSaysNo: a leader term asks Config.Leading right
// before every patch. A pod that was frozen past its renew deadline resumes
// with its term still running and its watch showing the new leader's label:
// it must demote nobody, and not relabel itself, before it steps down.
func TestNoPatchOnceConfigLeadingSaysNo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		web := map[string]string{"app.kubernetes.io/name": "web", key: "follower"}
		c := newCluster(t, pod(self, web), pod("peer", web))
		var mu sync.Mutex
		leads := true
		l, err := New(Config{Pods: c.client(self), Pod: self, Key: key, Log: slog.New(slog.DiscardHandler),
			Leading: func() bool { mu.Lock(); defer mu.Unlock(); return leads }})
		if err != nil {
			t.Fatal(err)
		}
		start(t, l)
		l.Set(Leader)
		synctest.Wait()
		if got := c.role(self); got != "leader" {
			t.Fatalf("own role = %q while leading, want leader", got)
		}
		n := len(c.callsBy(self, 0))

		mu.Lock()
		leads = false // the renew deadline passed; the election loop has not run yet
		mu.Unlock()
		c.setLabel("peer", key, ptr("leader")) // the new leader labels itself
		c.setLabel(self, key, ptr("follower")) // and demoted this stale one
		synctest.Wait()
		for _, cl := range c.callsBy(self, n) {
			if cl.verb == "patch" {
				t.Errorf("patched %s with %v after Leading turned false", cl.name, cl.body)
			}
		}
		if got := c.role("peer"); got != "leader" {
			t.Errorf("the new leader's role = %q, want leader: a stale pod demoted it", got)
		}
	})
}
