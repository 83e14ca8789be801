package healthcheck

import (
	"context"
	"errors"
	"time"
)

// Category is a named group of checks, run in order.
type Category interface {
	// Name is the category's stable identifier, e.g. "conduit-control-plane".
	Name() string
	// Checks are the checks of the category, in the order they run.
	Checks() []Check
}

// Check is one assertion about the cluster.
type Check struct {
	// Description says what must hold, e.g. "control plane pods are ready".
	Description string
	// Hint says what to do when the check fails.
	Hint string
	// Fatal stops the run (the remaining checks are not run) when the check fails.
	Fatal bool
	// Retry: with --wait, the check is run again until it passes or the wait ends.
	Retry bool
	// Run performs the check: nil passes; an error fails, unless it is a
	// Warning (reported, but the run still succeeds) or a Skip.
	Run func(ctx context.Context) error
}

// Static is a Category built from a name and a list of checks.
type Static struct {
	CategoryName string
	List         []Check
}

// Name implements Category.
func (s Static) Name() string { return s.CategoryName }

// Checks implements Category.
func (s Static) Checks() []Check { return s.List }

type warning struct{ err error }

func (w warning) Error() string { return w.err.Error() }
func (w warning) Unwrap() error { return w.err }

// Warning marks err as a warning: shown with its hint, but the run succeeds.
func Warning(err error) error {
	if err == nil {
		return nil
	}
	return warning{err}
}

type skip struct{ reason string }

func (s skip) Error() string { return s.reason }

// Skip reports that the check does not apply, with the reason.
func Skip(reason string) error { return skip{reason} }

// Status is the outcome of a check.
type Status string

// Outcomes of a check.
const (
	Success Status = "success"
	Warn    Status = "warning"
	Failure Status = "error"
	Skipped Status = "skipped"
)

// StatusOf returns the outcome a check's error stands for.
func StatusOf(err error) Status { return statusOf(err) }

func statusOf(err error) Status {
	var w warning
	var s skip
	switch {
	case err == nil:
		return Success
	case errors.As(err, &s):
		return Skipped
	case errors.As(err, &w):
		return Warn
	}
	return Failure
}

// Result is the outcome of one check (one entry of docs/check-json.md).
type Result struct {
	Description string `json:"description"`
	Status      Status `json:"result"`
	Error       string `json:"error,omitempty"`
	Hint        string `json:"hint,omitempty"`
}

// CategoryResult holds the results of one category's checks.
type CategoryResult struct {
	Name   string   `json:"categoryName"`
	Checks []Result `json:"checks"`
}

// Report is the outcome of a run: the document `mesh check -o json` prints.
type Report struct {
	Success    bool             `json:"success"`
	Categories []CategoryResult `json:"categories"`
}

// Observer sees the run's progress (for the table output and the spinner).
type Observer interface {
	// Waiting is called before each retry of a failing check.
	Waiting(category string, c Check, err error, left time.Duration)
	// Done is called when a check has its final result.
	Done(category string, r Result)
}

// Options of a run.
type Options struct {
	// Wait is how long retryable checks are retried; 0 runs each once.
	Wait time.Duration
	// RetryInterval is the pause between retries (default 2 s).
	RetryInterval time.Duration
	// Observer, if set, is told about progress.
	Observer Observer
}

// Run runs the checks of every category in order and returns the report.
// A failing Fatal check ends the run. ctx bounds the whole run.
func Run(ctx context.Context, cats []Category, o Options) Report {
	if o.RetryInterval <= 0 {
		o.RetryInterval = 2 * time.Second
	}
	deadline := time.Now().Add(o.Wait)
	rep := Report{Success: true}
	for _, cat := range cats {
		cr := CategoryResult{Name: cat.Name(), Checks: []Result{}}
		stop := false
		for _, c := range cat.Checks() {
			err := runOne(ctx, cat.Name(), c, deadline, o)
			r := Result{Description: c.Description, Status: statusOf(err)}
			if err != nil {
				r.Error = err.Error()
				if r.Status != Skipped {
					r.Hint = c.Hint
				}
			}
			if r.Status == Failure {
				rep.Success = false
				stop = c.Fatal
			}
			cr.Checks = append(cr.Checks, r)
			if o.Observer != nil {
				o.Observer.Done(cat.Name(), r)
			}
			if stop {
				break
			}
		}
		rep.Categories = append(rep.Categories, cr)
		if stop {
			break
		}
	}
	return rep
}

func runOne(ctx context.Context, cat string, c Check, deadline time.Time, o Options) error {
	for {
		err := c.Run(ctx)
		if err == nil || !c.Retry || statusOf(err) != Failure {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 || ctx.Err() != nil {
			return err
		}
		if o.Observer != nil {
			o.Observer.Waiting(cat, c, err, left)
		}
		t := time.NewTimer(min(o.RetryInterval, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}
