package web

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBrowser renders the dashboard in headless Chromium (Debian's chromium
// package) and keeps screenshots in e2e/artifacts/viz (or $E2E_ARTIFACTS/viz).
// It skips when no chromium is installed.
func TestBrowser(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("no chromium installed (apt-get install chromium)")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	srv := dashboard(t)
	artifacts := os.Getenv("E2E_ARTIFACTS")
	if artifacts == "" {
		artifacts = filepath.Join("..", "..", "..", "e2e", "artifacts")
	}
	dir := filepath.Join(artifacts, "viz")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	chrome := func(args ...string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
			"--disable-background-networking", "--disable-component-update", "--disable-sync",
			"--user-data-dir=" + t.TempDir(), "--window-size=1400,900"}
		out, err := exec.CommandContext(ctx, bin, append(base, args...)...).Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	for _, p := range []struct{ name, path string }{
		{"namespaces", "/"},
		{"namespace", "/namespaces/emojivoto"},
		{"workload", "/namespaces/emojivoto/deployment/web"},
	} {
		shot := filepath.Join(dir, "dashboard-"+p.name+".png")
		chrome("--screenshot="+shot, srv.URL+p.path)
		if st, err := os.Stat(shot); err != nil || st.Size() < 1000 {
			t.Errorf("screenshot %s: %v", shot, err)
		}
	}
	dom := chrome("--dump-dom", srv.URL+"/namespaces/emojivoto/deployment/web")
	for _, want := range []string{"deployment/web", "90.00%", "web.emojivoto.serviceaccount.identity.conduit.cluster.local", "No route traffic from meshed clients"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the rendered workload page lacks %q", want)
		}
	}
	t.Logf("screenshots in %s", dir)
}
