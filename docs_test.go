package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode"
)

// TestDocsLinks keeps every relative link of the README and docs/ pointing
// at a file that exists and, with a #fragment, at one of its headings.
func TestDocsLinks(t *testing.T) {
	pages, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	pages = append(pages, "README.md", "test/bench/results/README.md")
	if len(pages) < 3 {
		t.Fatalf("found only %v: docs/ is missing", pages)
	}
	links := 0
	for _, page := range pages {
		for _, l := range markdownLinks(t, page) {
			if strings.Contains(l.target, "://") || strings.HasPrefix(l.target, "mailto:") {
				continue
			}
			links++
			file, fragment, _ := strings.Cut(l.target, "#")
			path := page
			if file != "" {
				path = filepath.Join(filepath.Dir(page), file)
			}
			if _, err := os.Stat(path); err != nil {
				t.Errorf("%s:%d: link %q: %v", page, l.line, l.target, err)
				continue
			}
			if fragment == "" {
				continue
			}
			if !strings.HasSuffix(path, ".md") {
				t.Errorf("%s:%d: link %q: a #fragment of a file that is not Markdown", page, l.line, l.target)
				continue
			}
			if anchors := headingAnchors(t, path); !anchors[fragment] {
				t.Errorf("%s:%d: link %q: %s has no heading #%s", page, l.line, l.target, path, fragment)
			}
		}
	}
	if links < 20 {
		t.Errorf("checked only %d relative links; the README alone has more", links)
	}
}

// TestReadmeStaysShort: the README is read in minutes; the rest is in docs/.
func TestReadmeStaysShort(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > 400 {
		t.Errorf("README.md has %d lines, want at most 400: move the details to docs/", n)
	}
}

type link struct {
	line   int
	target string
}

var linkRE = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// markdownLinks returns the inline links of page outside code blocks.
func markdownLinks(t *testing.T, page string) []link {
	t.Helper()
	b, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	var links []link
	fenced := false
	for i, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		for _, m := range linkRE.FindAllStringSubmatch(line, -1) {
			links = append(links, link{line: i + 1, target: m[1]})
		}
	}
	return links
}

// headingAnchors returns the anchors GitHub gives the headings of path.
func headingAnchors(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	anchors := map[string]bool{}
	fenced := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
		}
		if fenced || !strings.HasPrefix(line, "#") {
			continue
		}
		anchors[slug(strings.TrimLeft(line, "# "))] = true
	}
	return anchors
}

// slug is GitHub's anchor of a heading: lower case, letters, digits, '-'
// and '_' kept, spaces made '-', everything else dropped.
func slug(heading string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(heading) {
		switch {
		case unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteByte('-')
		}
	}
	return b.String()
}

func TestSlug(t *testing.T) {
	for heading, want := range map[string]string{
		"How it decides": "how-it-decides",
		"4. Least privilege: RBAC and the admission policy": "4-least-privilege-rbac-and-the-admission-policy",
		"`leader-elector await`: wait for the status file":  "leader-elector-await-wait-for-the-status-file",
		"Coming from another elector":                       "coming-from-another-elector",
	} {
		if got := slug(heading); got != want {
			t.Errorf("slug(%q) = %q, want %q", heading, got, want)
		}
	}
}

// TestNoManifestNamesLatest: every image in deploy/, charts/ and the
// Dockerfiles is a pinned tag, so the default pull policy is IfNotPresent
// and what runs is what was tested.
func TestNoManifestNamesLatest(t *testing.T) {
	for _, root := range []string{"deploy", "charts", "Dockerfile"} {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, line := range strings.Split(string(data), "\n") {
				if strings.Contains(line, ":latest") {
					t.Errorf("%s:%d names an image :latest: %s", path, i+1, strings.TrimSpace(line))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
