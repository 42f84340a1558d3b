package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// The drop-in tests start the sidecar exactly as each original elector is
// started: its flags and its variables, nothing of ours (no LEASE_NAME, no
// IDENTITY, no STATUS_FILE), each process with its pod's hostname and /tmp.
// Only the ports differ per replica, since the test's pods share one network
// (set with the original's flag or variable where it has one, else with
// PROBE_ADDRESS or HEALTH_PORT), and KUBECONFIG stands for the in-cluster ServiceAccount
// token.

// appsOwnFile is what the app keeps at /tmp/leader_status in the drop-in
// tests' pods: a drop-in, like its original, must leave it alone.
const appsOwnFile = "the app's own file\n"

// startAs starts the sidecar of a new pod as another elector is started,
// in a /tmp where the app already keeps a file named leader_status, and
// checks at the end of the test that the sidecar touched no file there:
// neither that one nor a control socket.
func (f *fleet) startAs(pod string, args, env []string, healthURL string) *testcluster.Sidecar {
	f.t.Helper()
	tmp := filepath.Join(f.dir, pod, "emptydir")
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "leader_status"), []byte(appsOwnFile), 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { // before the fleet stops: the sidecars still run
		if b, err := os.ReadFile(filepath.Join(tmp, "leader_status")); err != nil || string(b) != appsOwnFile {
			f.t.Errorf("the app's /tmp/leader_status in %s: %q (%v), want it untouched: %q", pod, b, err, appsOwnFile)
		}
		if _, err := os.Stat(filepath.Join(tmp, "leader-elector.sock")); err == nil {
			f.t.Errorf("the sidecar of %s made a control socket in its /tmp, which its original never did", pod)
		}
	})
	f.addPod(pod, testcluster.PodOptions{Labels: map[string]string{"app": appLabel}})
	s, err := testcluster.StartSidecar(testcluster.SidecarOptions{
		Binary: binary, Namespace: f.ns, Pod: pod, Kubeconfig: f.podKubeconfig(pod),
		Dir: filepath.Join(f.dir, pod), Args: args, Env: env, AsStarted: true, HealthURL: healthURL,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.mu.Lock()
	f.sidecars = append(f.sidecars, s)
	f.mu.Unlock()
	return s
}

// holdPort8080 listens on :8080, the most common port of an app and our
// HEALTH_PORT's default, for the rest of the test, as an app in the pod
// would: a drop-in must start beside it. If another process holds it
// already, that serves as well.
func holdPort8080(t *testing.T) {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		t.Logf("port 8080 is taken already (%v): the drop-ins start beside that holder", err)
		return
	}
	t.Cleanup(func() { _ = ln.Close() })
}

// waitHolder waits until a running sidecar of the fleet other than not's
// holds the Lease, and returns its pod: the drop-ins write no status file.
func (f *fleet) waitHolder(timeout time.Duration, not string) string {
	f.t.Helper()
	var h string
	if !eventually(timeout, func() bool {
		h = f.holder(f.t.Context())
		if h == "" || h == not {
			return false
		}
		for _, s := range f.all() {
			if s.Opts.Pod == h && !s.Exited() {
				return true
			}
		}
		return false
	}) {
		f.t.Fatalf("no running sidecar other than %q holds the Lease within %s (holder %q)", not, timeout, h)
	}
	return h
}

// isLeaderOf is the pods whose running sidecar says is_leader in /status.
func (f *fleet) isLeaderOf(context.Context) ([]string, error) {
	var out []string
	for _, s := range f.all() {
		if s.Exited() {
			continue
		}
		if st, err := s.Status(); err == nil && st["is_leader"] == true {
			out = append(out, s.Opts.Pod)
		}
	}
	return out, nil
}

func freePort(t *testing.T) string {
	t.Helper()
	p, err := testcluster.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return strconv.Itoa(p)
}

// leaderJSON is what the NAIS and gcr electors answer.
type leaderJSON struct {
	Name       string `json:"name"`
	LastUpdate string `json:"last_update"`
}

// getLeader does what the originals' documentation shows: a plain GET,
// decoding name as JSON.
func getLeader(url string) (leaderJSON, error) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return leaderJSON{}, err
	}
	defer resp.Body.Close()
	var l leaderJSON
	if resp.StatusCode != http.StatusOK {
		return l, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return l, fmt.Errorf("GET %s: Content-Type %q", url, ct)
	}
	return l, json.NewDecoder(resp.Body).Decode(&l)
}

// sseClient reads the data: lines of an event stream, as NAIS's clients do.
type sseClient struct {
	names chan string // the name of every data message, in order
	done  chan error
}

func subscribe(t *testing.T, url string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("GET %s: Content-Type %q, want text/event-stream", url, ct)
	}
	c := &sseClient{names: make(chan string, 100), done: make(chan error, 1)}
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			line, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue // blank separators and comment heartbeats
			}
			var l leaderJSON
			if err := json.Unmarshal([]byte(line), &l); err != nil {
				c.done <- fmt.Errorf("data line %q: %w", line, err)
				return
			}
			c.names <- l.Name
		}
		c.done <- sc.Err()
	}()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

// next returns the next name that is not skip, or fails after timeout.
func (c *sseClient) next(t *testing.T, skip string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case n := <-c.names:
			if n != skip {
				return n
			}
		case err := <-c.done:
			t.Fatalf("the event stream ended: %v", err)
		case <-deadline:
			t.Fatalf("no message naming someone other than %q within %s", skip, timeout)
		}
	}
}

// TestDropInNAISElector starts three sidecars as naiserator starts NAIS
// elector, and reads them as NAIS apps do: $ELECTOR_GET_URL, $ELECTOR_PATH
// and $ELECTOR_SSE_URL.
func TestDropInNAISElector(t *testing.T) {
	f := newFleet(t)
	holdPort8080(t)
	sampleLeaders(t, "/status is_leader", f.isLeaderOf)
	type replica struct {
		s               *testcluster.Sidecar
		getURL, path    string
		sseURL, healthz string
	}
	var reps []replica
	for i := range 3 {
		pod := "nais-" + strconv.Itoa(i)
		http, probe, metrics := freePort(t), freePort(t), freePort(t)
		s := f.startAs(pod, []string{"--election=" + leaseName, "--election-namespace=" + f.ns,
			"--http=localhost:" + http, "--probe-address=0.0.0.0:" + probe},
			[]string{"ELECTOR_LOG_FORMAT=json", "ELECTOR_METRICS_ADDRESS=127.0.0.1:" + metrics},
			"http://127.0.0.1:"+probe)
		reps = append(reps, replica{s: s, getURL: "http://localhost:" + http + "/", path: "localhost:" + http,
			sseURL: "http://localhost:" + http + "/sse", healthz: "http://127.0.0.1:" + probe})
	}
	first := f.waitHolder(30*time.Second, "")
	for _, r := range reps {
		for _, url := range []string{r.getURL, "http://" + r.path, "http://" + r.path + "/any/path"} {
			var l leaderJSON
			var err error
			if !eventually(10*time.Second, func() bool { l, err = getLeader(url); return err == nil && l.Name == first }) {
				t.Errorf("GET %s = %+v, %v; want name %s", url, l, err, first)
			}
			if _, perr := time.Parse(time.RFC3339, l.LastUpdate); perr != nil {
				t.Errorf("GET %s: last_update %q is not RFC 3339: %v", url, l.LastUpdate, perr)
			}
		}
		for _, p := range []string{"/healthz", "/readyz"} {
			code, body, err := r.s.Get(p)
			if code != http.StatusOK {
				t.Errorf("%s%s = %d %q (%v), want 200 on --probe-address", r.healthz, p, code, body, err)
			}
		}
		if !strings.Contains(r.s.Log(), `"msg":`) {
			t.Errorf("ELECTOR_LOG_FORMAT=json: the log of %s is not JSON:\n%s", r.s.Opts.Pod, r.s.LogTail(5))
		}
	}

	// An SSE subscriber on a follower hears the current leader at once, then
	// the next one across a SIGTERM handover.
	var follower replica
	for _, r := range reps {
		if r.s.Opts.Pod != first {
			follower = r
		}
	}
	sse := subscribe(t, follower.sseURL)
	if got := sse.next(t, "", 5*time.Second); got != first {
		t.Fatalf("first SSE message names %q, want the leader %s", got, first)
	}
	start := time.Now()
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	next := sse.next(t, first, 20*time.Second)
	if next == "" {
		next = sse.next(t, "", 20*time.Second) // "no leader" may come between
	}
	t.Logf("SSE on %s: %s -> %s, %s after the SIGTERM", follower.s.Opts.Pod, first, next, time.Since(start).Round(time.Millisecond))
	if got := f.waitHolder(20*time.Second, first); got != next {
		t.Errorf("the SSE stream named %s, but %s leads", next, got)
	}
}

// TestDropInContribLeaderElector starts the sidecar as the
// gcr.io/google_containers/leader-elector image was started, and reads it as
// that project's example did.
func TestDropInContribLeaderElector(t *testing.T) {
	f := newFleet(t)
	holdPort8080(t)
	var urls []string
	for i := range 2 {
		pod := "gcr-" + strconv.Itoa(i)
		port := freePort(t)
		f.startAs(pod, []string{"--election=" + leaseName, "--election-namespace=" + f.ns, "--http=0.0.0.0:" + port,
			"--id=" + pod, "--ttl=10s"}, nil, "")
		urls = append(urls, "http://127.0.0.1:"+port+"/")
	}
	first := f.waitHolder(30*time.Second, "")
	for _, url := range urls {
		var l leaderJSON
		var err error
		if !eventually(10*time.Second, func() bool { l, err = getLeader(url); return err == nil && l.Name == first }) {
			t.Errorf("GET %s = %+v, %v; want name %s", url, l, err, first)
		}
	}
	if err := f.byPod(first).Terminate(); err != nil {
		t.Fatal(err)
	}
	second := f.waitHolder(20*time.Second, first)
	for _, url := range urls {
		if url == urls[0] && first == "gcr-0" || url == urls[1] && first == "gcr-1" {
			continue // the terminated one
		}
		var l leaderJSON
		var err error
		if !eventually(10*time.Second, func() bool { l, err = getLeader(url); return err == nil && l.Name == second }) {
			t.Errorf("after the handover GET %s = %+v, %v; want name %s", url, l, err, second)
		}
	}
}

// TestDropInAwaitElection runs a shell command through the sidecar as
// k8s-await-election users do: the command runs on the leader only, and moves
// to the new leader after a SIGTERM, once the old command stopped.
func TestDropInAwaitElection(t *testing.T) {
	f := newFleet(t)
	holdPort8080(t)
	// The command notes when it starts and stops, in nanoseconds, in its
	// pod's /tmp.
	script := `echo "start $(date +%s%N)" >> /tmp/command.log; trap 'echo "stop $(date +%s%N)" >> /tmp/command.log; exit 0' TERM; while :; do sleep 0.1; done`
	var status []string
	for i := range 2 {
		pod := "await-" + strconv.Itoa(i)
		port := freePort(t)
		f.startAs(pod, []string{"/bin/sh", "-c", script}, []string{
			"K8S_AWAIT_ELECTION_ENABLED=1",
			"K8S_AWAIT_ELECTION_NAME=myapp",
			"K8S_AWAIT_ELECTION_LOCK_NAME=" + leaseName,
			"K8S_AWAIT_ELECTION_LOCK_NAMESPACE=" + f.ns,
			"K8S_AWAIT_ELECTION_IDENTITY=" + pod,
			"K8S_AWAIT_ELECTION_STATUS_ENDPOINT=127.0.0.1:" + port,
		}, "")
		status = append(status, "http://127.0.0.1:"+port+"/")
	}
	// commandLog returns pod's command's events: "start" or "stop" and when.
	commandLog := func(pod string) (events []string, at []int64) {
		b, _ := os.ReadFile(filepath.Join(filepath.Dir(f.byPod(pod).StatusFile), "command.log"))
		for _, line := range strings.Fields(string(b)) {
			if n, err := strconv.ParseInt(line, 10, 64); err == nil {
				at = append(at, n)
			} else {
				events = append(events, line)
			}
		}
		return events, at
	}
	first := f.waitHolder(30*time.Second, "")
	other := "await-0"
	if first == other {
		other = "await-1"
	}
	if !eventually(10*time.Second, func() bool { ev, _ := commandLog(first); return strings.Join(ev, " ") == "start" }) {
		ev, _ := commandLog(first)
		t.Fatalf("the leader %s's command: %v, want it started", first, ev)
	}
	if ev, _ := commandLog(other); len(ev) != 0 {
		t.Fatalf("the follower %s ran the command: %v", other, ev)
	}
	for _, url := range status {
		// The follower's endpoint may start listening a moment after the
		// leader was elected (a loaded CI run saw it refused): wait for it.
		var code int
		var body string
		eventually(5*time.Second, func() bool {
			code, body = statusGet(url)
			return code == http.StatusOK
		})
		if code != http.StatusOK || body != `{"status": "ok"}` {
			t.Errorf("GET %s = %d %q, want 200 {\"status\": \"ok\"}", url, code, body)
		}
	}
	start := time.Now()
	leader := f.byPod(first)
	if err := leader.Signal(15); err != nil {
		t.Fatal(err)
	}
	select {
	case <-leader.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("the leader's sidecar did not exit after SIGTERM")
	}
	if second := f.waitHolder(20*time.Second, first); second != other {
		t.Fatalf("%s leads after the SIGTERM, want %s", second, other)
	}
	if !eventually(10*time.Second, func() bool { ev, _ := commandLog(other); return len(ev) == 1 }) {
		t.Fatalf("the command did not start on the new leader %s", other)
	}
	t.Logf("the command ran on %s %s after the SIGTERM of %s", other, time.Since(start).Round(time.Millisecond), first)
	oldEv, oldAt := commandLog(first)
	newEv, newAt := commandLog(other)
	if strings.Join(oldEv, " ") != "start stop" || len(oldAt) != 2 || len(newAt) != 1 || newEv[0] != "start" {
		t.Fatalf("command logs: %s %v %v, %s %v %v; want start and stop, then start", first, oldEv, oldAt, other, newEv, newAt)
	}
	if newAt[0] <= oldAt[1] {
		t.Errorf("the command started on %s %s before it stopped on %s", other, time.Duration(oldAt[1]-newAt[0]), first)
	}
	if err := leader.ExitErr(); err != nil {
		t.Errorf("the old leader's sidecar exited with %v, want the command's status 0", err)
	}
}

// statusGet is httpGet without a test: 0 when the GET fails.
func statusGet(url string) (int, string) {
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	var b strings.Builder
	_, _ = bufio.NewReader(resp.Body).WriteTo(&b)
	return resp.StatusCode, strings.TrimSpace(b.String())
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	code, body := statusGet(url)
	if code == 0 {
		t.Errorf("GET %s: %s", url, body)
		return 0, ""
	}
	return code, body
}
