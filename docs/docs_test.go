package docs

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// readmes are the documents checked besides every docs/*.md, relative to the
// repository root.
var readmes = []string{"README.md", "e2e/README.md", "plugin-sdk/README.md"}

var (
	// A code span that names a file or directory of the repository: it starts
	// with a top-level directory. Placeholders (<name>, *, {a,b}, $VAR) are not paths.
	repoPath = regexp.MustCompile("`((?:cli|core|proxy|pkg|e2e|extensions|plugin-sdk|proto|charts|hack|demo|docs|mk)/[A-Za-z0-9_./-]*)`")
	// A Go qualified name after a package path: core/injector.PatchContributor.
	goIdent = regexp.MustCompile(`\.[A-Z][A-Za-z0-9]*$`)
	// A Markdown link to something other than a URL.
	link = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	// Directories a page also names paths relative to (docs/viz.md's Tests
	// section names the viz packages' testdata as cli/testdata, ...).
	bases = map[string][]string{"docs/viz.md": {"extensions/viz"}}
	// Directories that runs make, absent from a fresh clone (.gitignore).
	generated = []string{"e2e/artifacts/"}
)

// TestDocPathsExist: every repository path a page names in a code span, and
// every relative link, exists (a link's #fragment is not checked). Files move
// and docs keep their old path: docs/viz.md named e2e/viz_test.go after the
// test had moved to e2e/tests/.
func TestDocPathsExist(t *testing.T) {
	root := ".."
	exists := func(p string) bool { _, err := os.Stat(filepath.Join(root, p)); return err == nil }
	inBase := func(page, p string) bool {
		for _, b := range bases[page] {
			if exists(filepath.Join(b, p)) {
				return true
			}
		}
		return false
	}
	pages, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no docs/*.md (%v)", err)
	}
	for i, p := range pages {
		pages[i], _ = filepath.Rel(root, p)
	}
	for _, page := range append(readmes, pages...) {
		b, err := os.ReadFile(filepath.Join(root, page))
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			where := page + ":" + strconv.Itoa(i+1)
			for _, m := range repoPath.FindAllStringSubmatch(line, -1) {
				p := strings.TrimRight(m[1], ".")
				if slices.ContainsFunc(generated, func(g string) bool { return strings.HasPrefix(p, g) }) {
					continue
				}
				if !exists(p) && !exists(goIdent.ReplaceAllString(p, "")) && !inBase(page, p) {
					t.Errorf("%s: `%s` does not exist", where, p)
				}
			}
			for _, m := range link.FindAllStringSubmatch(line, -1) {
				target, _, _ := strings.Cut(m[1], "#")
				if target == "" || strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				if p := filepath.Join(filepath.Dir(page), target); !exists(p) {
					t.Errorf("%s: link %s: %s does not exist", where, m[1], p)
				}
			}
		}
	}
}
