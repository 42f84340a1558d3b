package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/leader-elector/leader-elector/test/testcluster"
)

// listener subscribes, on every follower, to news of the leader, as an app
// beside it would, before old's SIGTERM. The wait it returns ends when the
// first of them hears of a leader that is neither old nor nobody.
type listener func(ctx context.Context, followers []*testcluster.Sidecar, old string) (wait func() error, err error)

// hearWatch listens on each follower's GET /watch, leader-elector's
// Server-Sent Events.
func hearWatch(ctx context.Context, followers []*testcluster.Sidecar, old string) (func() error, error) {
	heard := make(chan error, len(followers))
	for _, f := range followers {
		body, err := subscribe(ctx, f.HealthURL()+"/watch")
		if err != nil {
			return nil, fmt.Errorf("subscribe to %s: %w", f.Opts.Pod, err)
		}
		go func() {
			defer body.Close()
			heard <- readUntilNew(body, old)
		}()
	}
	return func() error {
		var errs []error
		timeout := time.After(60 * time.Second)
		for range followers {
			select {
			case err := <-heard:
				if err == nil {
					return nil
				}
				errs = append(errs, err)
			case <-timeout:
				return errors.New("no follower's /watch named a new leader within 60s")
			}
		}
		return fmt.Errorf("every follower's /watch ended: %w", errors.Join(errs...))
	}, nil
}

// subscribe opens an event stream, retrying for 10s while a restarted
// follower's health port is not yet listening.
func subscribe(ctx context.Context, url string) (io.ReadCloser, error) {
	var body io.ReadCloser
	var last error
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 10*time.Second, true, func(context.Context) (bool, error) {
		// The stream outlives the poll, whose context ends with it.
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return false, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			last = err
			return false, nil
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			last = fmt.Errorf("GET %s: %s", url, resp.Status)
			return false, nil
		}
		body = resp.Body
		return true, nil
	})
	if err != nil {
		return nil, errors.Join(err, last)
	}
	return body, nil
}

// readUntilNew reads Server-Sent Events until a message names a leader that
// is neither old nor nobody.
func readUntilNew(r io.Reader, old string) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok { // a comment, a blank line ending a message
			continue
		}
		var m struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal([]byte(data), &m); err != nil {
			return fmt.Errorf("decode %q: %w", data, err)
		}
		if m.Name != "" && m.Name != old {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return io.ErrUnexpectedEOF
}

// newLeaderFile is where the baseline in dir writes each new leader
// (NEW_LEADER_FILE, from client-go's OnNewLeader).
func newLeaderFile(dir string) string { return filepath.Join(dir, "new_leader") }

// hearNewLeaderFile removes each follower's new-leader file, so that what
// it holds later is news, then polls the files every millisecond.
func hearNewLeaderFile(ctx context.Context, followers []*testcluster.Sidecar, old string) (func() error, error) {
	for _, f := range followers {
		if err := os.Remove(newLeaderFile(f.Opts.Dir)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	return func() error {
		err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
			for _, f := range followers {
				b, _ := os.ReadFile(newLeaderFile(f.Opts.Dir)) // absent or half-written: not yet
				if name := strings.TrimSpace(string(b)); name != "" && name != old {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return fmt.Errorf("no follower's new_leader file named a new leader: %w", err)
		}
		return nil
	}, nil
}

// commandScript is the command run on the leader: it leaves a marker in its
// pod's directory (under podsDir, named after POD_NAME), then runs until
// SIGTERM, ending at once on it but for the current 50ms sleep.
func commandScript(podsDir string) string {
	return fmt.Sprintf(`trap 'exit 0' TERM; touch '%s'/"$POD_NAME"/command-ran; while :; do sleep 0.05; done`, podsDir)
}

// marker is the file the command of s leaves when it runs.
func marker(s *testcluster.Sidecar) string { return filepath.Join(s.Opts.Dir, "command-ran") }

// waitForCommand polls every millisecond until the command of one of the
// followers has run.
func waitForCommand(ctx context.Context, followers []*testcluster.Sidecar) error {
	err := wait.PollUntilContextTimeout(ctx, time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		for _, f := range followers {
			if _, err := os.Stat(marker(f)); err == nil {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("no follower ran the command: %w", err)
	}
	return nil
}
