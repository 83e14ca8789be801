package healthcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

type recorder struct{ waits int }

func (r *recorder) Waiting(string, Check, error, time.Duration) { r.waits++ }
func (r *recorder) Done(string, Result)                         {}

// flaky fails n times, then passes.
func flaky(n int) func(context.Context) error {
	return func(context.Context) error {
		if n > 0 {
			n--
			return errors.New("not yet")
		}
		return nil
	}
}

func fail(context.Context) error { return errors.New("broken") }
func pass(context.Context) error { return nil }

func TestRun(t *testing.T) {
	cases := []struct {
		name     string
		cats     []Category
		wait     time.Duration
		success  bool
		statuses string // one letter per check reported: s, w, e, k(skipped)
		waits    int
	}{
		{"all pass", []Category{Static{"a", []Check{{Description: "1", Run: pass}, {Description: "2", Run: pass}}}}, 0, true, "ss", 0},
		{"failure fails the run", []Category{Static{"a", []Check{{Description: "1", Run: fail}, {Description: "2", Run: pass}}}}, 0, false, "es", 0},
		{"warning does not fail", []Category{Static{"a", []Check{{Description: "1", Run: func(context.Context) error { return Warning(errors.New("meh")) }}}}}, 0, true, "w", 0},
		{"skip does not fail", []Category{Static{"a", []Check{{Description: "1", Run: func(context.Context) error { return Skip("n/a") }}}}}, 0, true, "k", 0},
		{"fatal stops the run", []Category{
			Static{"a", []Check{{Description: "1", Fatal: true, Run: fail}, {Description: "2", Run: pass}}},
			Static{"b", []Check{{Description: "3", Run: pass}}}}, 0, false, "e", 0},
		{"retry until it passes", []Category{Static{"a", []Check{{Description: "1", Retry: true, Run: flaky(2)}}}}, time.Minute, true, "s", 2},
		{"no retry without wait", []Category{Static{"a", []Check{{Description: "1", Retry: true, Run: flaky(2)}}}}, 0, false, "e", 0},
		{"no retry when not retryable", []Category{Static{"a", []Check{{Description: "1", Run: flaky(2)}}}}, time.Minute, false, "e", 0},
	}
	letter := map[Status]string{Success: "s", Warn: "w", Failure: "e", Skipped: "k"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			rep := Run(context.Background(), tc.cats, Options{Wait: tc.wait, RetryInterval: time.Millisecond, Observer: rec})
			var got strings.Builder
			for _, c := range rep.Categories {
				for _, r := range c.Checks {
					got.WriteString(letter[r.Status])
					if r.Status == Failure && r.Error == "" {
						t.Errorf("failure without error: %+v", r)
					}
				}
			}
			if rep.Success != tc.success || got.String() != tc.statuses || rec.waits != tc.waits {
				t.Fatalf("success=%v statuses=%q waits=%d, want %v %q %d", rep.Success, got.String(), rec.waits, tc.success, tc.statuses, tc.waits)
			}
		})
	}
}

func TestRetryStopsAtDeadline(t *testing.T) {
	start := time.Now()
	rep := Run(context.Background(), []Category{Static{"a", []Check{{Description: "1", Retry: true, Run: fail}}}}, Options{Wait: 50 * time.Millisecond, RetryInterval: 10 * time.Millisecond})
	if rep.Success || time.Since(start) > 2*time.Second {
		t.Fatalf("success=%v after %s", rep.Success, time.Since(start))
	}
}

func TestPrinter(t *testing.T) {
	cats := []Category{
		Static{"kubernetes-api", []Check{{Description: "can talk", Run: pass}}},
		Static{"conduit", []Check{
			{Description: "pods ready", Hint: "look at the pods", Run: fail},
			{Description: "expiry", Hint: "rotate", Run: func(context.Context) error { return Warning(errors.New("soon")) }},
		}},
	}
	for _, short := range []bool{false, true} {
		var b bytes.Buffer
		p := &Printer{Out: &b, Short: short}
		rep := Run(context.Background(), cats, Options{Observer: p})
		p.Summary(rep)
		want := "kubernetes-api\n--------------\n√ can talk\n\nconduit\n-------\n× pods ready\n    broken\n    hint: look at the pods\n‼ expiry\n    soon\n    hint: rotate\n\nStatus check results are ×\n"
		if short {
			want = strings.Replace(want, "kubernetes-api\n--------------\n√ can talk\n\n", "", 1)
		}
		if b.String() != want {
			t.Errorf("short=%v output:\n%s\nwant:\n%s", short, b.String(), want)
		}
	}
}

func TestJSON(t *testing.T) {
	rep := Run(context.Background(), []Category{Static{"a", []Check{{Description: "x", Hint: "h", Run: fail}}}}, Options{})
	var b bytes.Buffer
	if err := WriteJSON(&b, rep); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Success    bool
		Categories []struct {
			CategoryName string
			Checks       []struct{ Description, Result, Error, Hint string }
		}
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Categories[0].Checks[0]
	if doc.Success || doc.Categories[0].CategoryName != "a" || c.Result != "error" || c.Error != "broken" || c.Hint != "h" {
		t.Fatalf("json = %s", b.String())
	}
}

func TestPrinterSpinnerOnlyOnTTY(t *testing.T) {
	for _, tty := range []bool{false, true} {
		var b bytes.Buffer
		p := &Printer{Out: &b, TTY: tty}
		rep := Run(context.Background(), []Category{Static{"a", []Check{{Description: "pods ready", Retry: true, Run: flaky(1)}}}},
			Options{Wait: time.Minute, RetryInterval: time.Millisecond, Observer: p})
		p.Summary(rep)
		spun := strings.Contains(b.String(), "waiting") && strings.Contains(b.String(), "\r\033[K")
		if spun != tty || !strings.Contains(b.String(), "√ pods ready") {
			t.Errorf("tty=%v output %q", tty, b.String())
		}
	}
}
