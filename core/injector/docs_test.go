package injector

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDocsAnnotationTable checks the table of docs/injector.md's "Config
// annotations" against Settings: one row per annotation, none more, each
// with the outcome of an invalid value that the injector applies.
func TestDocsAnnotationTable(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "injector.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## Config annotations\n")
	if !ok {
		t.Fatal(`docs/injector.md has no "## Config annotations" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	rows := map[string]string{} // annotation -> its "Invalid value" cell
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		name := configPrefix + strings.Trim(cells[0], "`")
		if _, dup := rows[name]; dup {
			t.Errorf("%s: two rows", name)
		}
		rows[name] = strings.TrimSpace(cells[len(cells)-1])
	}
	words := map[Outcome]string{Refuse: "refused", Default: "defaulted + Event"}
	for _, s := range Settings {
		got, ok := rows[s.Name]
		if !ok {
			t.Errorf("%s: no row in docs/injector.md", s.Name)
			continue
		}
		if got != words[s.Outcome] {
			t.Errorf("%s: docs/injector.md says %q for an invalid value, the injector does %q", s.Name, got, words[s.Outcome])
		}
		delete(rows, s.Name)
	}
	for name := range rows {
		t.Errorf("%s: documented but not a setting of the injector", name)
	}
}
