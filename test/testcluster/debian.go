package testcluster

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// binCacheDir is the cache directory of hack/controlplane/build.sh, computed as
// it does: ${LEADER_ELECTOR_BIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/leader-elector/bin}.
// It is outside the repository, so a fresh clone reuses what was fetched.
func binCacheDir() (string, error) {
	if d := os.Getenv("LEADER_ELECTOR_BIN_CACHE"); d != "" {
		return d, nil
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("find the cache directory: %w", err)
		}
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "leader-elector", "bin"), nil
}

// DebianPackages fetches the Debian packages pkgs, in the candidate versions
// of the machine's apt lists, with `apt-get download` (nothing is installed
// on the system), and extracts them with `dpkg-deb -x` into one directory,
// which it returns: root+"/usr/bin/containerd" for "containerd". Only the
// packages named are fetched, not their dependencies.
//
// The directory is kept in the control plane's cache (see binCacheDir), under
// debs/<hash of names and versions>/root, so a second call returns at once
// and a new candidate version gives a new directory. A download that fails
// (lists missing or stale) runs `apt-get update` once and tries again. Test
// packages run in parallel: an flock makes one fetch and the others wait for
// it, and the directory appears by one rename, complete or not at all.
// Progress lines go to log (os.Stderr when nil).
func DebianPackages(log io.Writer, pkgs ...string) (root string, err error) {
	if log == nil {
		log = os.Stderr
	}
	if len(pkgs) == 0 {
		return "", errors.New("debian packages: no package named")
	}
	for _, tool := range []string{"apt-get", "apt-cache", "dpkg-deb"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("debian packages %s: %s not found: the test node takes its runtime from Debian packages and needs a Debian or Ubuntu machine with apt-get and dpkg-deb: %w", strings.Join(pkgs, " "), tool, err)
		}
	}
	cache, err := binCacheDir()
	if err != nil {
		return "", err
	}
	debs := filepath.Join(cache, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return "", fmt.Errorf("make the package cache: %w", err)
	}
	pkgs = slices.Sorted(slices.Values(pkgs))
	pkgs = slices.Compact(pkgs)

	var updated bool
	for {
		root, err := fetchDebs(log, debs, pkgs)
		if err == nil {
			return root, nil
		}
		if updated {
			return "", err
		}
		fmt.Fprintf(log, "debian packages: %v; running apt-get update once\n", err)
		if uerr := runLogging(log, "", "apt-get", "update"); uerr != nil {
			return "", fmt.Errorf("%w; and apt-get update (it needs root) failed: %v", err, uerr)
		}
		updated = true
	}
}

// fetchDebs returns the extracted root of pkgs, fetching it first if the
// cache does not have it.
func fetchDebs(log io.Writer, debs string, pkgs []string) (string, error) {
	// apt-cache takes a second or two (Debian's images keep no pkgcache.bin),
	// so the key found for these names is remembered for as long as apt's
	// lists, preferences and dpkg status stay as they are.
	st := sha256.Sum256([]byte(strings.Join(pkgs, "\n") + "\n" + aptState()))
	resolved := filepath.Join(debs, "resolved-"+hex.EncodeToString(st[:8]))
	if b, err := os.ReadFile(resolved); err == nil {
		root := filepath.Join(debs, strings.TrimSpace(string(b)), "root")
		if _, err := os.Stat(root); err == nil {
			return root, nil
		}
	}
	root, key, err := fetchPinned(log, debs, pkgs)
	if err != nil {
		return "", err
	}
	tmp := fmt.Sprintf("%s.%d", resolved, os.Getpid())
	if err := os.WriteFile(tmp, []byte(key+"\n"), 0o644); err == nil {
		_ = os.Rename(tmp, resolved) // only a shortcut: without it the next call asks apt-cache
	}
	return root, nil
}

// aptState fingerprints what apt's candidate versions depend on: the names,
// sizes and times of the package lists, preferences, sources, dpkg status.
func aptState() string {
	var b strings.Builder
	for _, glob := range []string{"/var/lib/apt/lists/*", "/etc/apt/preferences*", "/etc/apt/preferences.d/*", "/etc/apt/sources.list*", "/etc/apt/sources.list.d/*", "/var/lib/dpkg/status"} {
		files, _ := filepath.Glob(glob)
		for _, f := range files {
			if fi, err := os.Stat(f); err == nil {
				fmt.Fprintf(&b, "%s %d %d\n", f, fi.Size(), fi.ModTime().UnixNano())
			}
		}
	}
	return b.String()
}

// fetchPinned resolves the candidate versions of pkgs and returns their
// extracted root and cache key, fetching them first if the cache does not
// have them.
func fetchPinned(log io.Writer, debs string, pkgs []string) (root, key string, err error) {
	versions, err := candidates(pkgs)
	if err != nil {
		return "", "", err
	}
	var pinned []string
	for _, p := range pkgs {
		pinned = append(pinned, p+"="+versions[p])
	}
	sum := sha256.Sum256([]byte(strings.Join(pinned, "\n")))
	key = hex.EncodeToString(sum[:8])
	dir := filepath.Join(debs, key)
	root = filepath.Join(dir, "root")
	if _, err := os.Stat(root); err == nil {
		return root, key, nil
	}

	lock, err := os.OpenFile(filepath.Join(debs, key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", "", fmt.Errorf("open the package cache lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", "", fmt.Errorf("lock the package cache: %w", err)
	}
	if _, err := os.Stat(root); err == nil {
		return root, key, nil // another test package fetched it while we waited
	}
	// Under the lock, a temp dir of this key is what a killed run left.
	old, _ := filepath.Glob(filepath.Join(debs, ".tmp-"+key+"-*"))
	for _, o := range old {
		_ = os.RemoveAll(o)
	}

	fmt.Fprintf(log, "debian packages: fetching %s (once)\n", strings.Join(pinned, " "))
	tmp, err := os.MkdirTemp(debs, ".tmp-"+key+"-")
	if err != nil {
		return "", "", fmt.Errorf("make a temp dir for the packages: %w", err)
	}
	defer os.RemoveAll(tmp)
	dl := filepath.Join(tmp, "download")
	if err := os.Mkdir(dl, 0o755); err != nil {
		return "", "", fmt.Errorf("make the download dir: %w", err)
	}
	args := []string{"download"}
	if os.Geteuid() == 0 {
		// apt's _apt user cannot enter a cache under a 0700 home; as root
		// apt would say so and download as root anyway.
		args = append(args, "-o", "APT::Sandbox::User=root")
	}
	if err := runLogging(log, dl, "apt-get", append(args, pinned...)...); err != nil {
		return "", "", fmt.Errorf("download %s: %w", strings.Join(pinned, " "), err)
	}
	files, err := filepath.Glob(filepath.Join(dl, "*.deb"))
	if err != nil || len(files) != len(pkgs) {
		return "", "", fmt.Errorf("download %s: got %d .deb files, want %d", strings.Join(pinned, " "), len(files), len(pkgs))
	}
	into := filepath.Join(tmp, "root")
	for _, f := range files {
		if err := runLogging(log, "", "dpkg-deb", "-x", f, into); err != nil {
			return "", "", fmt.Errorf("extract %s: %w", filepath.Base(f), err)
		}
	}
	if err := os.RemoveAll(dl); err != nil {
		return "", "", fmt.Errorf("remove the downloads: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "packages"), []byte(strings.Join(pinned, "\n")+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("write the package list: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", "", fmt.Errorf("move the packages into the cache: %w", err)
	}
	return root, key, nil
}

// candidates returns the version apt would install of each package, from
// `apt-cache policy`; a package without one is an error.
func candidates(pkgs []string) (map[string]string, error) {
	cmd := exec.Command("apt-cache", append([]string{"policy"}, pkgs...)...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("apt-cache policy %s: %w: %s", strings.Join(pkgs, " "), err, strings.TrimSpace(stderr.String()))
	}
	versions := map[string]string{}
	var current string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") && strings.HasSuffix(line, ":") {
			current = strings.TrimSuffix(line, ":")
			continue
		}
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "Candidate: "); ok && current != "" && v != "(none)" {
			versions[current] = v
		}
	}
	var missing []string
	for _, p := range pkgs {
		if versions[p] == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("no candidate version of %s in the apt lists", strings.Join(missing, " "))
	}
	return versions, nil
}

// runLogging runs a command in dir with its output going to log.
func runLogging(log io.Writer, dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = log, io.MultiWriter(log, &stderr)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, lastLineOf(stderr.String()))
	}
	return nil
}

func lastLineOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
