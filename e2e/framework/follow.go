package framework

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
)

// FollowLogs streams, from now until t ends, the logs of every container of
// every pod in namespace ns, timestamped, into
// ArtifactsDir(t)/<ns>/followed/<pod>.<container>.log. It keeps what
// DumpArtifacts cannot: the logs of pods that a rollout replaced during the
// test. The files are removed when t passes.
func (f *Framework) FollowLogs(t testing.TB, ns string) {
	t.Helper()
	dir := filepath.Join(f.ArtifactsDir(t), ns, "followed")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("e2e: follow logs: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := f.Client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		cancel()
		t.Fatalf("e2e: follow logs of %s: %v", ns, err)
	}
	var wg sync.WaitGroup
	started := map[string]bool{} // pod/container streams begun; the watch goroutine's alone
	follow := func(pod, container string) {
		defer wg.Done()
		out, err := os.Create(filepath.Join(dir, pod+"."+container+".log"))
		if err != nil {
			t.Logf("e2e: follow logs: %v", err)
			return
		}
		defer out.Close()
		rc, err := f.Client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: container, Follow: true, Timestamps: true}).Stream(ctx)
		if err != nil {
			fmt.Fprintf(out, "(no logs: %v)\n", err)
			return
		}
		defer rc.Close()
		_, _ = io.Copy(out, rc)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer w.Stop()
		for ev := range w.ResultChan() {
			if ev.Type != watch.Added && ev.Type != watch.Modified {
				continue
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
			for _, s := range statuses {
				if s.State.Running == nil && s.State.Terminated == nil {
					continue // no logs yet
				}
				if key := p.Name + "/" + s.Name; !started[key] {
					started[key] = true
					wg.Add(1)
					go follow(p.Name, s.Name)
				}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if !t.Failed() {
			_ = os.RemoveAll(dir)
		}
	})
}
