package framework

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// NamespaceLabel marks every namespace the e2e tests create.
const NamespaceLabel = "e2e.conduit.dev/test"

// NewNamespace creates a namespace with a unique name ("e2e-<prefix>-<random>") and the given
// labels. When the test ends the namespace's logs and events are collected if the test failed,
// then it is deleted (set E2E_KEEP_NAMESPACES=1 to keep it for debugging).
func (f *Framework) NewNamespace(t testing.TB, prefix string, labels map[string]string) string {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	name := "e2e-" + sanitize(prefix, 40) + "-" + hex.EncodeToString(b)
	l := map[string]string{NamespaceLabel: sanitize(t.Name(), 63)}
	for k, v := range labels {
		l[k] = v
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l, Annotations: map[string]string{RunAnnotation: f.RunID}}}
	ctx := Context(t, 30*time.Second)
	if _, err := f.Client.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("e2e: creating namespace %s: %v", name, err)
	}
	f.track(t, name, true)
	return name
}

// DeleteNamespace deletes a namespace; with wait it returns once the namespace is gone.
func (f *Framework) DeleteNamespace(t testing.TB, name string, wait bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := f.Client.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("e2e: deleting namespace %s: %v", name, err)
		return
	}
	if !wait {
		return
	}
	f.WaitFor(t, "namespace "+name+" deleted", 2*time.Minute, func(ctx context.Context) (bool, error) {
		_, err := f.Client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	})
}

// removeEarlierNamespaces deletes the test namespaces (NamespaceLabel) that another run
// (RunAnnotation other than f.RunID, or none) left behind, and waits until they are gone. The
// local cluster keeps its state across restarts, so a run that was interrupted leaves its
// namespaces, and their meshed pods hold proxies of an earlier control plane that no workload
// restarts: the tests must not meet them.
func (f *Framework) removeEarlierNamespaces(t testing.TB) {
	t.Helper()
	ctx := Context(t, time.Minute)
	l, err := f.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: NamespaceLabel})
	if err != nil {
		t.Fatalf("e2e: listing the test namespaces: %v", err)
	}
	var earlier []string
	for _, ns := range l.Items {
		if ns.Annotations[RunAnnotation] != f.RunID {
			earlier = append(earlier, ns.Name)
		}
	}
	if len(earlier) == 0 {
		return
	}
	t.Logf("e2e: removing the namespaces an earlier run left: %v", earlier)
	for _, ns := range earlier {
		f.DeleteNamespace(t, ns, true)
	}
}

// CollectOnFailure registers namespaces (shared ones such as the control plane's) whose logs
// and events are saved if t fails. The test's own namespaces (NewNamespace) are registered already.
func (f *Framework) CollectOnFailure(t testing.TB, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		f.track(t, ns, false)
	}
}

// testState is what the framework remembers about one running test.
type testState struct {
	collect []string // namespaces whose logs and events are saved on failure
	owned   []string // namespaces deleted when the test ends
}

// track records a namespace of test t. The first call registers one cleanup that, when t ends,
// first collects the artifacts (if t failed) and then deletes the namespaces t owns, so that
// nothing is deleted before it has been collected.
func (f *Framework) track(t testing.TB, ns string, owned bool) {
	f.mu.Lock()
	st, ok := f.tests[t.Name()]
	if !ok {
		st = &testState{}
		f.tests[t.Name()] = st
	}
	st.collect = append(st.collect, ns)
	if owned {
		st.owned = append(st.owned, ns)
	}
	f.mu.Unlock()
	if ok {
		return
	}
	t.Cleanup(func() {
		f.mu.Lock()
		delete(f.tests, t.Name())
		f.mu.Unlock()
		if t.Failed() {
			f.DumpArtifacts(t, st.collect...)
		}
		if env("E2E_KEEP_NAMESPACES", "") == "1" {
			t.Logf("keeping namespaces %v (E2E_KEEP_NAMESPACES=1)", st.owned)
			return
		}
		for _, ns := range st.owned {
			f.DeleteNamespace(t, ns, false)
		}
	})
}

// sanitize turns s into a DNS label: lowercase alphanumerics and '-', at most max characters.
func sanitize(s string, max int) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(s) {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > max {
		out = strings.Trim(out[:max], "-")
	}
	if out == "" {
		out = "x"
	}
	return out
}

// Token is a ten-minute token of ServiceAccount sa in namespace ns (the
// TokenRequest API), for the given audiences, or the API server's own when
// none are given.
func (f *Framework) Token(t testing.TB, ns, sa string, audiences ...string) string {
	t.Helper()
	exp := int64(600)
	tr, err := f.Client.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("e2e: token of %s/%s for %v: %v", ns, sa, audiences, err)
	}
	return tr.Status.Token
}
