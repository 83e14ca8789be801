// Package healthcheck runs `mesh check`: named categories of checks, each
// check with a hint shown when it fails, retried until a deadline with
// --wait, and reported as a table, a short summary or JSON (docs/check-json.md).
//
// A Category is a small interface so that categories from other sources (the
// core's, and the extensions' checks merged in by the plugin SDK) are run and
// reported together: the runner takes a []Category and appends nothing itself.
package healthcheck
