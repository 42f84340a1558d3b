package config

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/leader-elector/leader-elector/status"
)

// Control is the request channel of `leader-elector resign` (package
// control): a unix socket in the pod's shared directory, never a port.
type Control struct {
	// ControlSocket is, after Load, the socket's absolute path, or "" when
	// it is off.
	ControlSocket string `env:"CONTROL_SOCKET" desc:"unix socket (mode 0600) on which the sidecar takes the requests of leader-elector resign; default: leader-elector.sock in the directory of STATUS_FILE, so /tmp/leader-elector.sock; at most 107 bytes, the limit of a socket's path (a longer default turns the socket off); \"-\": off"`
	// ControlSocketOff says, after Load, why ControlSocket is "": for the
	// log. It is no variable.
	ControlSocketOff string
}

// ControlSocketOff is the CONTROL_SOCKET that turns the socket off.
const ControlSocketOff = "-"

// controlSocketName is the socket's name next to the status file.
const controlSocketName = "leader-elector.sock"

// MaxSocketPath is the longest path a unix socket can have on Linux: 108
// bytes with the terminating NUL.
const MaxSocketPath = 107

// ControlSocket returns the control socket's absolute path as the sidecar
// and `leader-elector resign` both find it through lookup (like
// os.LookupEnv): CONTROL_SOCKET, else leader-elector.sock in the directory
// of the status file (STATUS_FILE, else STATUS_DIR, else the default).
//
// When the socket is off, path is "" and off says why: CONTROL_SOCKET is
// "-", or the default path is too long for a socket (a status file deep in
// a directory tree must not stop a sidecar that ran before the socket
// existed). An explicit path that cannot be a socket's is an error naming
// the variable, the value and the rule.
func ControlSocket(lookup func(string) (string, bool)) (path, off string, err error) {
	p, _ := lookup("CONTROL_SOCKET")
	derived := p == ""
	switch {
	case p == ControlSocketOff:
		return "", fmt.Sprintf("CONTROL_SOCKET=%q", p), nil
	case derived:
		statusFile, _ := lookup("STATUS_FILE")
		statusDir, _ := lookup("STATUS_DIR")
		sf, err := status.Resolve(statusFile, statusDir)
		if err != nil {
			return "", "", fmt.Errorf("CONTROL_SOCKET is not set, and its default next to the status file cannot be found: %w", err)
		}
		if sf == "" {
			return "", fmt.Sprintf("CONTROL_SOCKET is not set, and STATUS_FILE=%q has no directory for its default", statusFile), nil
		}
		p = filepath.Join(filepath.Dir(sf), controlSocketName)
	case strings.IndexByte(p, 0) >= 0:
		return "", "", controlSocketError(p, "must not contain a NUL byte")
	default:
		abs, err := filepath.Abs(p)
		if err != nil {
			return "", "", controlSocketError(p, "cannot be made absolute: "+err.Error())
		}
		p = abs
	}
	if len(p) > MaxSocketPath {
		rule := fmt.Sprintf("more than %d bytes long (%d), the limit of a unix socket's path", MaxSocketPath, len(p))
		if derived {
			return "", fmt.Sprintf("CONTROL_SOCKET is not set, and its default next to the status file, %q, is %s; set CONTROL_SOCKET to a shorter path", p, rule), nil
		}
		return "", "", controlSocketError(p, "must not be "+rule+fmt.Sprintf("; set CONTROL_SOCKET to a shorter path, or %q to turn the socket off", ControlSocketOff))
	}
	return p, "", nil
}

func controlSocketError(value, rule string) error {
	return &varError{key: "CONTROL_SOCKET", msg: fmt.Sprintf("CONTROL_SOCKET=%q: %s", value, rule)}
}

// resolveControl sets ControlSocket to the path the server listens on.
func (c *Config) resolveControl(p *problems) {
	path, off, err := ControlSocket(p.lookup)
	var bad *status.PathError
	switch {
	case errors.As(err, &bad):
		return // the status file's own rule, reported for STATUS_FILE
	case err != nil:
		p.add(err)
		return
	}
	c.ControlSocket, c.ControlSocketOff = path, off
}
