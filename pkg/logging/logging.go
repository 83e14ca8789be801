// Package logging builds the structured (log/slog) logger of a component.
// Every component has one logger, tagged with its name; the level and the
// format come from the component's flags or environment.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// ParseLevel accepts debug, info, warn and error.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "debug":
		return slog.LevelDebug, nil
	case "", "info":
		return slog.LevelInfo, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("logging: unknown level %q (accepted: debug, info, warn, error)", s)
}

// ParseNamedLevel is ParseLevel for a level a user names (a runtime
// change): empty is not "info" but an error.
func ParseNamedLevel(s string) (slog.Level, error) {
	if strings.TrimSpace(s) == "" {
		return 0, fmt.Errorf("logging: no level (accepted: debug, info, warn, error)")
	}
	return ParseLevel(s)
}

// LevelName is the name ParseLevel accepts for l: debug, info, warn, error.
func LevelName(l slog.Level) string { return strings.ToLower(l.String()) }

// New returns the logger of component, writing JSON (format "json") or
// logfmt-style text (format "text") to w. A *slog.LevelVar as level lets
// the level change while the component runs.
func New(w io.Writer, component string, level slog.Leveler, format string) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(h).With("component", component)
}
