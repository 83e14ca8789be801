package framework

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ArtifactsDir is where the artifacts of a test go: <artifacts root>/<test name>.
func (f *Framework) ArtifactsDir(t testing.TB) string {
	return filepath.Join(f.Artifacts, strings.ReplaceAll(sanitizePath(t.Name()), "/", "__"))
}

func sanitizePath(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.', r == '/':
			return r
		}
		return '_'
	}, s)
}

// DumpArtifacts saves, for each namespace, its events (events.txt), its pods (pods.json) and the
// logs of every container, current and previous (<pod>.<container>.log), into ArtifactsDir(t),
// and prints that path. Errors are logged, never fatal: this runs while a test is failing.
func (f *Framework) DumpArtifacts(t testing.TB, namespaces ...string) {
	dir := f.ArtifactsDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seen := map[string]bool{}
	for _, ns := range namespaces {
		if seen[ns] {
			continue
		}
		seen[ns] = true
		if err := f.dumpNamespace(ctx, filepath.Join(dir, ns), ns); err != nil {
			t.Logf("e2e: collecting artifacts of namespace %s: %v", ns, err)
		}
	}
	t.Logf("e2e: artifacts of %s (logs and events of %v) are in %s", t.Name(), namespaces, dir)
}

func (f *Framework) dumpNamespace(ctx context.Context, dir, ns string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []string
	events, err := f.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		errs = append(errs, err.Error())
	} else if err := os.WriteFile(filepath.Join(dir, "events.txt"), []byte(formatEvents(events.Items)), 0o644); err != nil {
		errs = append(errs, err.Error())
	}
	pods, err := f.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("%s", strings.Join(append(errs, err.Error()), "; "))
	}
	if b, err := json.MarshalIndent(pods, "", "  "); err == nil {
		if err := os.WriteFile(filepath.Join(dir, "pods.json"), b, 0o644); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for _, p := range pods.Items {
		var containers []string
		for _, c := range p.Spec.InitContainers {
			containers = append(containers, c.Name)
		}
		for _, c := range p.Spec.Containers {
			containers = append(containers, c.Name)
		}
		for _, c := range containers {
			for _, previous := range []bool{false, true} {
				b, err := f.Client.CoreV1().Pods(ns).GetLogs(p.Name, &corev1.PodLogOptions{Container: c, Previous: previous}).DoRaw(ctx)
				if err != nil {
					if !previous {
						b = []byte(fmt.Sprintf("(no logs: %v)\n", err))
					} else {
						continue
					}
				}
				name := p.Name + "." + c + ".log"
				if previous {
					name = p.Name + "." + c + ".previous.log"
				}
				if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
					errs = append(errs, err.Error())
				}
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// formatEvents renders events oldest first, one per line, like `kubectl get events`.
func formatEvents(events []corev1.Event) string {
	sort.SliceStable(events, func(i, j int) bool { return eventTime(events[i]).Before(eventTime(events[j])) })
	var b strings.Builder
	for _, e := range events {
		fmt.Fprintf(&b, "%s\t%s\t%s\t%s/%s\t%s (x%d)\n", eventTime(e).UTC().Format(time.RFC3339),
			e.Type, e.Reason, strings.ToLower(e.InvolvedObject.Kind), e.InvolvedObject.Name,
			strings.TrimSpace(e.Message), max(e.Count, 1))
	}
	return b.String()
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
