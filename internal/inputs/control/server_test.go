package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/leader-elector/leader-elector/internal/config"
)

var (
	errNotLeader = errors.New("not the leader")
	errAPI       = errors.New("writing the Lease: connection refused")
)

// refused is the Options.Refused the sidecar would pass.
func refused(err error) bool { return errors.Is(err, errNotLeader) }

// fakeResigner records its calls and answers with err. With block set, a
// call reports itself on entered and waits for block to close or its
// context to end.
type fakeResigner struct {
	err     error
	block   chan struct{}
	entered chan string

	mu     sync.Mutex
	calls  []string
	ctxErr []error // the context's error when each call returned
}

func (f *fakeResigner) Handover(ctx context.Context, to string) error {
	err := f.err
	if f.block != nil {
		f.entered <- to
		select {
		case <-f.block:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, to)
	f.ctxErr = append(f.ctxErr, ctx.Err())
	return err
}

func (f *fakeResigner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// shortDir is a temporary directory with a path short enough for a socket
// (t.TempDir's, with the test's name in it, may not be), removed at the end.
func shortDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// serve listens on path and runs the server until the test ends; Run must
// then return nil and leave no socket behind.
func serve(t *testing.T, path string, r Resigner) *Server {
	t.Helper()
	s, err := Listen(path, r, Options{Refused: refused, Log: testLog(t)})
	if err != nil {
		t.Fatalf("Listen(%s) error = %v", path, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run() = %v, want nil once its context ended", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after Run: Lstat(%s) error = %v, want the socket removed", path, err)
		}
	})
	return s
}

// send makes one request on the socket and returns the status, the Allow
// header and the body's one line.
func send(t *testing.T, path, method, target string) (int, string, Reply) {
	t.Helper()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", path)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequest(method, "http://leader-elector"+target, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q, want application/json", method, target, ct)
	}
	if bytes.Count(body, []byte("\n")) != 1 || !bytes.HasSuffix(body, []byte("\n")) {
		t.Errorf("%s %s: body %q, want one line", method, target, body)
	}
	if !resp.Close {
		t.Errorf("%s %s: connection kept open, want one request per connection", method, target)
	}
	var reply Reply
	if err := json.Unmarshal(body, &reply); err != nil {
		t.Fatalf("%s %s: body %q: %v", method, target, body, err)
	}
	return resp.StatusCode, resp.Header.Get("Allow"), reply
}

func TestServerAnswers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name        string
		err         error // of Handover
		method      string
		target      string
		wantCode    int
		wantReply   Reply
		wantCalls   []string
		wantAllow   string
		wantInError string
	}{
		{name: "release", method: "POST", target: "/resign", wantCode: 200, wantReply: Reply{OK: true}, wantCalls: []string{""}},
		{name: "hand to a peer", method: "POST", target: "/resign?to=pod-b", wantCode: 200, wantReply: Reply{OK: true, Leader: "pod-b"}, wantCalls: []string{"pod-b"}},
		{name: "peer name escaped", method: "POST", target: "/resign?to=pod%2Bb", wantCode: 200, wantReply: Reply{OK: true, Leader: "pod+b"}, wantCalls: []string{"pod+b"}},
		{name: "not the leader", err: errNotLeader, method: "POST", target: "/resign", wantCode: 409, wantInError: "not the leader", wantCalls: []string{""}},
		{name: "not the leader, wrapped", err: errors.Join(errors.New("resign"), errNotLeader), method: "POST", target: "/resign?to=pod-b", wantCode: 409, wantInError: "not the leader", wantCalls: []string{"pod-b"}},
		{name: "failed", err: errAPI, method: "POST", target: "/resign", wantCode: 500, wantInError: "writing the Lease: connection refused", wantCalls: []string{""}},
		{name: "GET", method: "GET", target: "/resign", wantCode: 405, wantAllow: "POST", wantInError: "method GET: /resign takes POST only"},
		{name: "PUT", method: "PUT", target: "/resign?to=pod-b", wantCode: 405, wantAllow: "POST", wantInError: "takes POST only"},
		{name: "other path", method: "POST", target: "/release", wantCode: 404, wantInError: `no such path "/release"`},
		{name: "root", method: "GET", target: "/", wantCode: 404, wantInError: "the only request is POST /resign"},
		{name: "empty to", method: "POST", target: "/resign?to=", wantCode: 400, wantInError: "to is empty"},
		{name: "two peers", method: "POST", target: "/resign?to=a&to=b", wantCode: 400, wantInError: "to is given 2 times"},
		{name: "unknown parameter", method: "POST", target: "/resign?force=1", wantCode: 400, wantInError: `unknown parameter "force"`},
		{name: "bad query", method: "POST", target: "/resign?to=%zz", wantCode: 400, wantInError: "bad query"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(shortDir(t), "leader-elector.sock")
			f := &fakeResigner{err: tt.err}
			serve(t, path, f)
			code, allow, reply := send(t, path, tt.method, tt.target)
			if code != tt.wantCode || allow != tt.wantAllow {
				t.Errorf("%s %s = %d (Allow %q), want %d (Allow %q)", tt.method, tt.target, code, allow, tt.wantCode, tt.wantAllow)
			}
			if tt.wantInError != "" {
				if reply.OK || !strings.Contains(reply.Error, tt.wantInError) {
					t.Errorf("%s %s: reply %+v, want ok false and an error with %q", tt.method, tt.target, reply, tt.wantInError)
				}
			} else if reply != tt.wantReply {
				t.Errorf("%s %s: reply %+v, want %+v", tt.method, tt.target, reply, tt.wantReply)
			}
			if got := f.Calls(); strings.Join(got, ",") != strings.Join(tt.wantCalls, ",") || len(got) != len(tt.wantCalls) {
				t.Errorf("Handover calls = %q, want %q", got, tt.wantCalls)
			}
		})
	}
}

// TestServerOneHandoverAtATime: a request while a handover runs is refused
// at once with 409, and the next one after it is served.
func TestServerOneHandoverAtATime(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "leader-elector.sock")
	f := &fakeResigner{block: make(chan struct{}), entered: make(chan string, 1)}
	serve(t, path, f)

	first := make(chan Reply, 1)
	go func() {
		_, _, reply := send(t, path, "POST", "/resign?to=pod-b")
		first <- reply
	}()
	if to := <-f.entered; to != "pod-b" {
		t.Fatalf("first Handover(to=%q), want pod-b", to)
	}
	code, _, reply := send(t, path, "POST", "/resign")
	if code != 409 || !strings.Contains(reply.Error, "another resign request is in progress") {
		t.Errorf("second request while the first runs = %d %+v, want 409 naming the request in progress", code, reply)
	}
	close(f.block)
	if reply := <-first; reply != (Reply{OK: true, Leader: "pod-b"}) {
		t.Errorf("first request = %+v, want ok with leader pod-b", reply)
	}
	go func() { <-f.entered }() // the third call reports itself, and block is closed
	if code, _, reply := send(t, path, "POST", "/resign"); code != 200 || !reply.OK {
		t.Errorf("request after the first ended = %d %+v, want 200 ok", code, reply)
	}
	if got := f.Calls(); strings.Join(got, ",") != "pod-b," {
		t.Errorf("Handover calls = %q, want [pod-b, \"\"]: the refused one never reached it", got)
	}
}

// TestServerHandoverOutlivesTheClient: a client that stops waiting does not
// cut the handover short; the end of Run does.
func TestServerHandoverOutlivesTheClient(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "leader-elector.sock")
	f := &fakeResigner{block: make(chan struct{}), entered: make(chan string, 1)}
	s, err := Listen(path, f, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	clientCtx, giveUp := context.WithCancel(context.Background())
	resigned := make(chan error, 1)
	go func() {
		_, err := Resign(clientCtx, path, "")
		resigned <- err
	}()
	<-f.entered
	giveUp()
	if err := <-resigned; !errors.Is(err, context.Canceled) {
		t.Errorf("Resign() after the client gave up = %v, want context.Canceled", err)
	}
	close(f.block) // the handover completes although nobody waits
	// The next request is served only once the first Handover returned.
	go func() { <-f.entered }()
	for {
		if _, err := Resign(context.Background(), path, "pod-c"); err == nil {
			break
		} else if !strings.Contains(err.Error(), "in progress") {
			t.Fatalf("Resign(pod-c) = %v", err)
		}
	}
	f.mu.Lock()
	if len(f.ctxErr) < 1 || f.ctxErr[0] != nil {
		t.Errorf("first Handover returned with context error %v, want none: the client's leaving must not cancel it", f.ctxErr)
	}
	f.mu.Unlock()

	// A handover still running when Run's context ends sees it end.
	f2 := &fakeResigner{block: make(chan struct{}), entered: make(chan string, 1)}
	path2 := filepath.Join(shortDir(t), "leader-elector.sock")
	s2, err := Listen(path2, f2, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, stop := context.WithCancel(context.Background())
	done2 := make(chan error, 1)
	go func() { done2 <- s2.Run(ctx2) }()
	go func() { _, _ = Resign(context.Background(), path2, "") }()
	<-f2.entered
	stop()
	if err := <-done2; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
	f2.mu.Lock()
	if len(f2.ctxErr) != 1 || !errors.Is(f2.ctxErr[0], context.Canceled) {
		t.Errorf("Handover at Run's end returned with context error %v, want context.Canceled", f2.ctxErr)
	}
	f2.mu.Unlock()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run() = %v, want nil", err)
	}
}

// staleSocket leaves a socket at path that nobody listens on, as a killed
// sidecar does.
func staleSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != fs.ModeSocket {
		t.Fatalf("stale socket: Lstat = %v, %v", fi, err)
	}
}

// TestListenAtThePath: what Listen does with what it finds at the path.
func TestListenAtThePath(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		prepare func(t *testing.T, path string)
		wantErr []string // empty: Listen succeeds
	}{
		{name: "nothing"},
		{name: "stale socket: removed", prepare: staleSocket},
		{name: "live socket: refused", prepare: func(t *testing.T, path string) {
			ln, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = ln.Close() })
		}, wantErr: []string{"another process listens on this socket", "a live socket is never replaced", `set CONTROL_SOCKET to another path, or to "-"`}},
		{name: "regular file: refused", prepare: func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("keep me"), 0o644); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"is a regular file, not a socket", "only a stale socket is replaced", "set CONTROL_SOCKET to another path"}},
		{name: "directory: refused", prepare: func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"is a directory, not a socket"}},
		{name: "symbolic link to a stale socket: refused", prepare: func(t *testing.T, path string) {
			target := filepath.Join(filepath.Dir(path), "target.sock")
			staleSocket(t, target)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"is a symbolic link, not a socket"}},
		{name: "no directory", prepare: func(t *testing.T, path string) {
			if err := os.Remove(filepath.Dir(path)); err != nil {
				t.Fatal(err)
			}
		}, wantErr: []string{"cannot create the socket in", "no such file or directory"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := shortDir(t)
			path := filepath.Join(dir, "leader-elector.sock")
			var before os.FileInfo
			if tt.prepare != nil {
				tt.prepare(t, path)
				before, _ = os.Lstat(path)
			}
			f := &fakeResigner{}
			s, err := Listen(path, f, Options{Log: testLog(t)})
			if len(tt.wantErr) > 0 {
				if err == nil {
					_ = s.Close()
					t.Fatal("Listen() = nil error, want it refused")
				}
				for _, w := range append([]string{`CONTROL_SOCKET="` + path + `": `}, tt.wantErr...) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Listen() error %q lacks %q", err, w)
					}
				}
				if after, _ := os.Lstat(path); before != nil && (after == nil || !os.SameFile(before, after)) {
					t.Errorf("Listen() refused but replaced what was at %s", path)
				}
				return
			}
			if err != nil {
				t.Fatalf("Listen() error = %v", err)
			}
			t.Cleanup(func() { _ = s.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- s.Run(ctx) }()
			if _, err := Resign(context.Background(), path, ""); err != nil {
				t.Errorf("Resign() = %v, want it served", err)
			}
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run() = %v", err)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("after Run: %s holds %v, want nothing (no socket, no temporary directory)", dir, entries)
			}
		})
	}
}

// TestListenSocketMode: the socket has mode 0600 even with umask 0, at its
// path's full length too (where the temporary name would not fit). Not
// parallel: the umask is the process's.
func TestListenSocketMode(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	short, parent := shortDir(t), shortDir(t)
	long := filepath.Join(parent, strings.Repeat("d", config.MaxSocketPath-len(parent)-len("/x")-1))
	if err := os.Mkdir(long, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{filepath.Join(short, "leader-elector.sock"), filepath.Join(long, "x")} {
		s, err := Listen(path, &fakeResigner{}, Options{Log: testLog(t)})
		if err != nil {
			t.Fatalf("Listen(%s) error = %v", path, err)
		}
		fi, err := os.Lstat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 {
			t.Errorf("Listen(%s): mode %v, want a socket with 0600", path, fi.Mode())
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("Listen(%s): directory holds %v, want the socket alone", path, entries)
		}
		if err := s.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("after Close: Lstat(%s) = %v, want the socket removed", path, err)
		}
	}
}

// TestCloseLeavesAReplacedPath: a file put at the path after Listen is not
// the sidecar's to remove.
func TestCloseLeavesAReplacedPath(t *testing.T) {
	t.Parallel()
	path := filepath.Join(shortDir(t), "leader-elector.sock")
	s, err := Listen(path, &fakeResigner{}, Options{Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("someone else's"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close() = %v", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "someone else's" {
		t.Errorf("after Close: %s = %q, %v; want the other file left alone", path, b, err)
	}
}
