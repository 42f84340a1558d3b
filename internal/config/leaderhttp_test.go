package config

import (
	"strings"
	"testing"
)

func TestLeaderHTTPAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		value string
		want  string // the error's one line; "" for none
	}{
		{"", ""}, // off
		{"localhost:4040", ""},
		{"0.0.0.0:27070", ""},
		{":4040", ""},
		{"[::1]:4040", ""},
		{"localhost", `LEADER_HTTP_ADDRESS="localhost": must be host:port, such as 0.0.0.0:4041, :8080 or localhost:4040, with a port from 1 to 65535`},
		{"localhost:http", `LEADER_HTTP_ADDRESS="localhost:http": must be host:port, such as 0.0.0.0:4041, :8080 or localhost:4040, with a port from 1 to 65535`},
		{":0", `LEADER_HTTP_ADDRESS=":0": must be host:port, such as 0.0.0.0:4041, :8080 or localhost:4040, with a port from 1 to 65535`},
		{":65536", `LEADER_HTTP_ADDRESS=":65536": must be host:port, such as 0.0.0.0:4041, :8080 or localhost:4040, with a port from 1 to 65535`},
		{"http://localhost:4040/", `LEADER_HTTP_ADDRESS="http://localhost:4040/": must be host:port, such as 0.0.0.0:4041, :8080 or localhost:4040, with a port from 1 to 65535`},
	} {
		t.Run(tc.value, func(t *testing.T) {
			t.Parallel()
			env := minimalEnv()
			env["LEADER_HTTP_ADDRESS"] = tc.value
			c, err := Load(lookupIn(env), testSources(t))
			if tc.want == "" {
				if err != nil || c.LeaderHTTPAddress != tc.value {
					t.Fatalf("Load: %q, %v; want %q, no error", c.LeaderHTTPAddress, err, tc.value)
				}
				return
			}
			if err == nil || strings.Contains(err.Error(), "\n") || err.Error() != tc.want {
				t.Fatalf("Load error:\n%v\nwant the one line\n%s", err, tc.want)
			}
		})
	}
}
