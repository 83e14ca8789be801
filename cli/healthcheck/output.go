package healthcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Output formats of `mesh check -o`.
const (
	FormatTable = "table"
	FormatShort = "short"
	FormatJSON  = "json"
)

var symbols = map[Status]string{Success: "√", Warn: "‼", Failure: "×", Skipped: "-"}

// Printer prints a run as it progresses (table and short formats) and
// implements Observer. On a terminal it shows a spinner line while a check
// is retried; elsewhere it prints nothing while waiting.
type Printer struct {
	Out    io.Writer
	Short  bool // only warnings and failures, then the summary
	TTY    bool // Out is a terminal: show the spinner
	cat    string
	frame  int
	inLine bool
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Waiting implements Observer.
func (p *Printer) Waiting(_ string, c Check, err error, left time.Duration) {
	if !p.TTY {
		return
	}
	p.frame = (p.frame + 1) % len(spinner)
	msg := fmt.Sprintf("%s %s -- waiting (%s left): %s", spinner[p.frame], c.Description, left.Round(time.Second), firstLine(err.Error()))
	fmt.Fprintf(p.Out, "\r\033[K%s", msg)
	p.inLine = true
}

// Done implements Observer.
func (p *Printer) Done(category string, r Result) {
	if p.inLine {
		fmt.Fprint(p.Out, "\r\033[K")
		p.inLine = false
	}
	if p.Short && r.Status == Success {
		return
	}
	if category != p.cat {
		if p.cat != "" {
			fmt.Fprintln(p.Out)
		}
		fmt.Fprintf(p.Out, "%s\n%s\n", category, strings.Repeat("-", len(category)))
		p.cat = category
	}
	fmt.Fprintf(p.Out, "%s %s\n", symbols[r.Status], r.Description)
	if r.Status == Success {
		return
	}
	if r.Error != "" {
		fmt.Fprintf(p.Out, "    %s\n", strings.ReplaceAll(r.Error, "\n", "\n    "))
	}
	if r.Hint != "" {
		fmt.Fprintf(p.Out, "    hint: %s\n", r.Hint)
	}
}

// Summary prints the final status line.
func (p *Printer) Summary(rep Report) {
	if p.cat != "" {
		fmt.Fprintln(p.Out)
	}
	if rep.Success {
		if warnings(rep) > 0 {
			fmt.Fprintf(p.Out, "Status check results are √ (with %d warnings)\n", warnings(rep))
			return
		}
		fmt.Fprintln(p.Out, "Status check results are √")
		return
	}
	fmt.Fprintln(p.Out, "Status check results are ×")
}

func warnings(rep Report) int {
	n := 0
	for _, c := range rep.Categories {
		for _, r := range c.Checks {
			if r.Status == Warn {
				n++
			}
		}
	}
	return n
}

// WriteJSON prints the report as the JSON document of docs/check-json.md.
func WriteJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
