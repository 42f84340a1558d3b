package config_test

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/leader-elector/leader-elector/internal/config"
	"github.com/leader-elector/leader-elector/internal/dropins/compat"
)

// TestIdentity: where the identity comes from, through every front end as
// main starts it (compat.Translate, then config.Load): an explicit setting
// (IDENTITY, contrib's --id, K8S_AWAIT_ELECTION_IDENTITY), else POD_NAME when
// set and not empty, else the hostname, which in a hostNetwork pod is the
// node's and shared by every replica on it.
func TestIdentity(t *testing.T) {
	t.Parallel()
	own := map[string]string{"LEASE_NAME": "my-lease", "NAMESPACE": "default"}
	await := map[string]string{
		"K8S_AWAIT_ELECTION_ENABLED": "1", "K8S_AWAIT_ELECTION_NAME": "e", "K8S_AWAIT_ELECTION_LOCK_NAME": "lock",
		"K8S_AWAIT_ELECTION_LOCK_NAMESPACE": "ns", "K8S_AWAIT_ELECTION_IDENTITY": "await-id",
	}
	naiserator := []string{"--election=myapp", "--election-namespace=ns", "--http=localhost:4040", "--probe-address=0.0.0.0:4041"}
	uname := errors.New("uname failed")
	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		extra    map[string]string // merged over env
		hostname string            // "" with hostErr: the hostname cannot be read
		hostErr  error
		want     string   // the identity
		wantErr  []string // in the one line of the error; nil for none
		noHost   bool     // the hostname must not be read
	}{
		{name: "POD_NAME unset: the hostname", env: own, hostname: "node-1", want: "node-1"},
		{name: "POD_NAME set: it, not the node's hostname", env: own, extra: map[string]string{"POD_NAME": "myapp-7c9f-x2k4q"},
			hostname: "node-1", want: "myapp-7c9f-x2k4q", noHost: true},
		{name: "POD_NAME empty: the hostname", env: own, extra: map[string]string{"POD_NAME": ""}, hostname: "node-1", want: "node-1"},
		{name: "IDENTITY wins over POD_NAME", env: own, extra: map[string]string{"IDENTITY": "me", "POD_NAME": "myapp-0"},
			hostname: "node-1", want: "me", noHost: true},
		{name: "IDENTITY empty: POD_NAME", env: own, extra: map[string]string{"IDENTITY": "", "POD_NAME": "myapp-0"},
			hostname: "node-1", want: "myapp-0", noHost: true},
		{name: "IDENTITY and POD_NAME with LABEL_POD_ROLE: the label still goes on POD_NAME", env: own,
			extra:    map[string]string{"IDENTITY": "me", "POD_NAME": "myapp-0", "LABEL_POD_ROLE": "true"},
			hostname: "node-1", want: "me", noHost: true},
		{name: "POD_NAME set, the hostname unreadable: no error", env: own, extra: map[string]string{"POD_NAME": "myapp-0"},
			hostErr: uname, want: "myapp-0", noHost: true},
		{name: "POD_NAME unset, the hostname unreadable", env: own, hostErr: uname,
			wantErr: []string{"IDENTITY is not set, nor POD_NAME", "uname failed", "set IDENTITY, or POD_NAME from the Downward API"}},
		{name: "POD_NAME empty, the hostname empty", env: own, extra: map[string]string{"POD_NAME": ""},
			wantErr: []string{"IDENTITY is not set, nor POD_NAME", "hostname is empty", "set IDENTITY, or POD_NAME from the Downward API"}},

		{name: "contrib --id wins over POD_NAME", args: []string{"--election=example", "--election-namespace=ns", "--id=gcr-id"},
			env: map[string]string{"POD_NAME": "myapp-0"}, hostname: "node-1", want: "gcr-id", noHost: true},
		{name: "contrib without --id: POD_NAME", args: []string{"--election=example", "--election-namespace=ns"},
			env: map[string]string{"POD_NAME": "myapp-0"}, hostname: "node-1", want: "myapp-0", noHost: true},
		{name: "contrib without --id nor POD_NAME: the hostname, as its run.sh's --id=$(hostname)",
			args: []string{"--election=example", "--election-namespace=ns"}, hostname: "node-1", want: "node-1"},
		{name: "contrib --id empty", args: []string{"--election=example", "--election-namespace=ns", "--id="},
			env: map[string]string{"POD_NAME": "myapp-0"}, hostname: "node-1", noHost: true,
			wantErr: []string{`--id="": must not be empty`, "POD_NAME", "hostname"}},
		{name: "contrib --id and a different IDENTITY", args: []string{"--election=example", "--election-namespace=ns", "--id=x"},
			env: map[string]string{"IDENTITY": "y", "POD_NAME": "myapp-0"}, hostname: "node-1", noHost: true,
			wantErr: []string{`--id="x" and IDENTITY="y"`, "set only one"}},
		{name: "k8s-await-election's IDENTITY wins over POD_NAME", args: []string{"mycmd"}, env: await,
			extra: map[string]string{"POD_NAME": "myapp-0"}, hostname: "node-1", want: "await-id", noHost: true},
		{name: "nais/elector with POD_NAME: it", args: naiserator, env: map[string]string{"POD_NAME": "myapp-0"},
			hostname: "node-1", want: "myapp-0", noHost: true},
		{name: "nais/elector without POD_NAME: the hostname, as there", args: naiserator, hostname: "node-1", want: "node-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{}
			for _, m := range []map[string]string{tt.env, tt.extra} {
				for k, v := range m {
					env[k] = v
				}
			}
			lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
			hostCalls := 0
			src := config.Sources{
				Hostname:      func() (string, error) { hostCalls++; return tt.hostname, tt.hostErr },
				NamespaceFile: filepath.Join(t.TempDir(), "namespace"),
			}
			c, err := load(tt.args, lookup, src)
			if tt.noHost && hostCalls > 0 {
				t.Errorf("the hostname was read %d times, although the identity is given", hostCalls)
			}
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error, identity %q; want one naming %q", c.Identity, tt.wantErr)
				}
				if lines := strings.Split(err.Error(), "\n"); len(lines) != 1 {
					t.Errorf("error has %d lines, want 1:\n%v", len(lines), err)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not contain %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if c.Identity != tt.want {
				t.Errorf("identity = %q, want %q", c.Identity, tt.want)
			}
			if c.PodName != env["POD_NAME"] {
				t.Errorf("PodName = %q, want POD_NAME %q unchanged", c.PodName, env["POD_NAME"])
			}
		})
	}
}

// load does what main does: translate the front end, then load, with the
// error in the user's own names.
func load(args []string, lookup func(string) (string, bool), src config.Sources) (config.Config, error) {
	tr, err := compat.Translate(args, lookup)
	if err != nil {
		return config.Config{}, err
	}
	c, err := config.Load(tr.Lookup, src)
	if err != nil {
		return c, tr.Explain(err)
	}
	return c, nil
}
