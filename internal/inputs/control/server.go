// Package control is the running sidecar's request channel: `leader-elector
// resign`, run in the sidecar's container, asks it to step down and release
// the Lease, or to hand the Lease straight to a named peer.
//
// The channel is a unix socket in the pod's shared directory, with mode 0600:
// only the sidecar's user (and root) in the pod can use it, and nothing
// outside the pod can; it is never on TCP, nor on the health port. The
// protocol is HTTP/1.1 over that socket, one request per connection:
//
//	POST /resign          step down and hand the Lease to the standby, or
//	                      release it
//	POST /resign?to=POD   step down and hand the Lease to peer POD by a
//	                      take-over; released if POD does not take it
//
// The answer comes once the handover is done or has failed, as one line of
// JSON (Reply): 200 {"ok":true,...}; 409 when the sidecar refuses in its
// current state (not the leader, another request in progress); 400, 404 or
// 405 for a bad request; 500 when the handover failed.
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/leader-elector/leader-elector/internal/config"
)

// Resigner is what carries a request out: the elector.
type Resigner interface {
	// Handover steps down; with to == "" it hands the Lease to the
	// standby or releases it, else it hands it to peer to. It returns
	// once that is done, or with
	// the reason it could not be, such as "not the leader".
	Handover(ctx context.Context, to string) error
}

// Options are a Server's optional settings.
type Options struct {
	// Refused says whether an error of Handover is a refusal in the
	// sidecar's current state, such as "not the leader", answered 409;
	// the others are failures, answered 500. nil: every error is a failure.
	Refused func(error) bool
	// Log receives a line per request and per socket event; slog.Default()
	// when nil.
	Log *slog.Logger
}

// Reply is the body of every answer, one line of JSON.
type Reply struct {
	OK bool `json:"ok"`
	// Leader is the peer the Lease was handed to, on success with to.
	Leader string `json:"leader,omitempty"`
	// Error says why the request was refused or failed.
	Error string `json:"error,omitempty"`
}

// Path is the only request path.
const Path = "/resign"

// variable names the setting of the socket's path in errors.
const variable = "CONTROL_SOCKET"

// shutdownGrace bounds how long Run waits, once its context ended, for an
// answer being written.
const shutdownGrace = 2 * time.Second

// Server answers requests on the control socket.
type Server struct {
	path    string
	ln      *net.UnixListener
	created os.FileInfo // the socket Listen put at path, to remove only that one
	r       Resigner
	refused func(error) bool
	log     *slog.Logger
	busy    atomic.Bool // a Handover is running
	close   sync.Once
}

// Listen creates the socket at path (absolute, as config.ControlSocket
// returns it), with mode 0600 whatever the umask, and returns the Server
// that answers on it once Run runs. A stale socket at path, one nobody
// listens on, is removed first; a live one, or anything else at path, is an
// error naming CONTROL_SOCKET, the path and the rule.
func Listen(path string, r Resigner, opts Options) (*Server, error) {
	s := &Server{path: path, r: r, refused: opts.Refused, log: opts.Log}
	if s.refused == nil {
		s.refused = func(error) bool { return false }
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.removeStale(); err != nil {
		return nil, err
	}
	ln, err := listen(path)
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // Close removes path only if it is still this socket
	s.ln = ln
	if s.created, err = os.Lstat(path); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("%s=%q: the socket just created is gone: %w", variable, path, err)
	}
	return s, nil
}

// listen binds a socket to path with mode 0600. It binds in a new directory
// of mode 0700 next to path, sets the mode, and then links it to path, so
// that the socket is never reachable with the mode the umask gave it; the
// link fails, as bind would, when something appeared at path meanwhile.
// Where that directory's longer name does not fit a socket's path, it binds
// to path itself and sets the mode right after.
func listen(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	tmp, err := os.MkdirTemp(dir, ".ctl")
	if err != nil {
		return nil, fmt.Errorf("%s=%q: cannot create the socket in %s: %w", variable, path, dir, err)
	}
	defer os.RemoveAll(tmp)
	name := filepath.Join(tmp, "s")
	if len(name) > config.MaxSocketPath {
		name = path
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: name, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("%s=%q: cannot listen: %w", variable, path, err)
	}
	if err := os.Chmod(name, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("%s=%q: cannot set the socket's mode to 0600: %w", variable, path, err)
	}
	if name != path {
		err := os.Link(name, path)
		if errors.Is(err, fs.ErrExist) {
			err = errors.New("something else was created at this path meanwhile; set CONTROL_SOCKET to a path of this sidecar's own")
		}
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("%s=%q: cannot put the socket in place: %w", variable, path, err)
		}
	}
	return ln, nil
}

// removeStale clears path of a socket that nobody listens on, as a sidecar
// that was killed leaves behind. Anything else at path is an error.
func (s *Server) removeStale() error {
	const change = `set CONTROL_SOCKET to another path, or to "-" to turn the socket off`
	fi, err := os.Lstat(s.path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("%s=%q: cannot look at the path: %w", variable, s.path, err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("%s=%q: is %s, not a socket: only a stale socket is replaced; remove it, or %s", variable, s.path, describe(fi), change)
	}
	conn, err := net.DialTimeout("unix", s.path, time.Second)
	switch {
	case err == nil:
		_ = conn.Close()
		return fmt.Errorf("%s=%q: another process listens on this socket (a second leader-elector in this pod?): a live socket is never replaced; %s", variable, s.path, change)
	case !errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%s=%q: is a socket that cannot be tried (%v): only a socket nobody listens on is replaced; %s", variable, s.path, err, change)
	}
	if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s=%q: cannot remove the stale socket: %w", variable, s.path, err)
	}
	s.log.Info("removed a stale control socket that nobody listened on", "path", s.path)
	return nil
}

// describe names the kind of file fi is.
func describe(fi os.FileInfo) string {
	switch t := fi.Mode().Type(); {
	case t == 0:
		return "a regular file"
	case t&fs.ModeDir != 0:
		return "a directory"
	case t&fs.ModeSymlink != 0:
		return "a symbolic link"
	default:
		return "a " + t.String() + " file"
	}
}

// Path returns the socket's path.
func (s *Server) Path() string { return s.path }

// Run answers requests until ctx ends, then waits a moment for an answer
// being written, closes the socket and removes it. A Handover runs with ctx
// itself, not the request's: a client that stops waiting does not cut a
// handover short.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	srv := &http.Server{
		Handler:           s.handler(ctx),
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	srv.SetKeepAlivesEnabled(false) // one request per connection
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving the control socket %s: %w", s.path, err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}

// Close closes the socket and removes it, unless something else has
// replaced it at its path. Run does it at its end; call it for a Server
// whose Run never runs.
func (s *Server) Close() error {
	var err error
	s.close.Do(func() {
		_ = s.ln.Close()
		if fi, lerr := os.Lstat(s.path); lerr == nil && os.SameFile(fi, s.created) {
			if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				err = fmt.Errorf("removing the control socket %s: %w", s.path, rerr)
			}
		}
	})
	return err
}

func (s *Server) handler(ctx context.Context) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != Path {
			answer(w, http.StatusNotFound, Reply{Error: fmt.Sprintf("no such path %q: the only request is POST %s or POST %s?to=POD", r.URL.Path, Path, Path)})
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			answer(w, http.StatusMethodNotAllowed, Reply{Error: fmt.Sprintf("method %s: %s takes POST only", r.Method, Path)})
			return
		}
		to, err := target(r)
		if err != nil {
			answer(w, http.StatusBadRequest, Reply{Error: err.Error()})
			return
		}
		if !s.busy.CompareAndSwap(false, true) {
			s.log.Info("resign request refused: another one is in progress", "to", to)
			answer(w, http.StatusConflict, Reply{Error: "another resign request is in progress; try again once it is answered"})
			return
		}
		defer s.busy.Store(false)
		s.log.Info("resign requested", "to", to)
		start := time.Now()
		err = s.r.Handover(ctx, to)
		switch {
		case err == nil:
			s.log.Info("resign done", "to", to, "took", time.Since(start))
			answer(w, http.StatusOK, Reply{OK: true, Leader: to})
		case s.refused(err):
			s.log.Info("resign refused", "to", to, "err", err)
			answer(w, http.StatusConflict, Reply{Error: err.Error()})
		default:
			s.log.Warn("resign failed", "to", to, "err", err)
			answer(w, http.StatusInternalServerError, Reply{Error: err.Error()})
		}
	})
}

// target reads the request's peer: "" without to.
func target(r *http.Request) (string, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", fmt.Errorf("bad query %q: %w", r.URL.RawQuery, err)
	}
	for k := range q {
		if k != "to" {
			return "", fmt.Errorf("unknown parameter %q: the only one is to=POD", k)
		}
	}
	to, set := q["to"]
	switch {
	case !set:
		return "", nil
	case len(to) > 1:
		return "", fmt.Errorf("to is given %d times: name one peer", len(to))
	case to[0] == "":
		return "", errors.New("to is empty: name the peer, or leave to out to release the Lease")
	}
	return to[0], nil
}

func answer(w http.ResponseWriter, code int, reply Reply) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(reply)
}
