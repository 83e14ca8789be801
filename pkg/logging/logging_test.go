package logging

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
)

func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    slog.Level
		wantErr bool
	}{
		{"debug", slog.LevelDebug, false},
		{"INFO", slog.LevelInfo, false},
		{"", slog.LevelInfo, false},
		{"warning", slog.LevelWarn, false},
		{"error", slog.LevelError, false},
		{"verbose", 0, true},
	} {
		got, err := ParseLevel(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseLevel(%q) = %v, %v; want %v, err=%v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestNewTagsComponent(t *testing.T) {
	var buf bytes.Buffer
	New(&buf, "proxy", slog.LevelInfo, "json").Info("hello", "k", 1)
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	if m["component"] != "proxy" || m["msg"] != "hello" {
		t.Fatalf("unexpected record %v", m)
	}
	buf.Reset()
	New(&buf, "proxy", slog.LevelWarn, "json").Info("dropped")
	if buf.Len() != 0 {
		t.Fatalf("info logged at warn level: %s", buf.String())
	}
}

func TestParseNamedLevelAndLevelName(t *testing.T) {
	if _, err := ParseNamedLevel("  "); err == nil {
		t.Error("an empty level named at runtime was accepted")
	}
	for _, name := range []string{"debug", "info", "warn", "error"} {
		l, err := ParseNamedLevel(name)
		if err != nil || LevelName(l) != name {
			t.Errorf("%s: %v %v -> %q", name, l, err, LevelName(l))
		}
	}
}
