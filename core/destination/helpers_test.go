package destination

import (
	"context"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	"github.com/conduit-mesh/conduit/pkg/kubefixture"
	pb "github.com/conduit-mesh/conduit/proto/destination/v1"
	"google.golang.org/grpc"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"
)

// env is an Index fed by fake clients built from YAML fixtures.
type env struct {
	x        *Index
	srv      *Server
	client   *fake.Clientset
	dyn      *dynamicfake.FakeDynamicClient
	recorder *record.FakeRecorder
	ctx      context.Context
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// newEnv starts an Index over the fixtures and waits until every informer watches.
func newEnv(t *testing.T, docs ...string) *env {
	t.Helper()
	return newEnvWith(t, nil, docs...)
}

// newEnvWith is newEnv with a hook to adjust the Config.
func newEnvWith(t *testing.T, adjust func(*Config), docs ...string) *env {
	t.Helper()
	typed, custom := kubefixture.Objects(t, docs...)
	client := fake.NewClientset(typed...)
	var watching atomic.Int32
	client.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		watching.Add(1)
		return false, nil, nil
	})
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{
		v1alpha2.GroupVersionResource: v1alpha2.ListKind,
		TrafficSplitGVR:               "TrafficSplitList",
	}, custom...)
	dyn.PrependWatchReactor("*", func(k8stesting.Action) (bool, watch.Interface, error) {
		watching.Add(1)
		return false, nil, nil
	})
	rec := record.NewFakeRecorder(100)
	cfg := Config{
		Client: client, Dynamic: dyn, ServiceProfiles: true, TrafficSplits: true,
		Recorder: rec, ControllerNamespace: "conduit",
	}
	if adjust != nil {
		adjust(&cfg)
	}
	x, err := NewIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("index: %v", err)
		}
	})
	select {
	case <-x.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("caches did not sync")
	}
	deadline := time.Now().Add(5 * time.Second)
	for watching.Load() < 6 { // services, slices, pods, nodes, profiles, splits
		if time.Now().After(deadline) {
			t.Fatalf("only %d informers watch", watching.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	return &env{x: x, srv: NewServer(x, nil), client: client, dyn: dyn, recorder: rec, ctx: ctx}
}

// stream is a fake server stream; when gate is set, every Send waits for a
// value on it (a stuck client).
type stream[T any] struct {
	grpc.ServerStream
	ctx  context.Context
	msgs chan *T
	gate chan struct{}
}

func newStream[T any](ctx context.Context) *stream[T] {
	return &stream[T]{ctx: ctx, msgs: make(chan *T, 1000)}
}

func (s *stream[T]) Context() context.Context { return s.ctx }

func (s *stream[T]) Send(m *T) error {
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
	s.msgs <- m
	return nil
}

func (s *stream[T]) next(t *testing.T) *T {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no message within 5s")
		return nil
	}
}

func (s *stream[T]) none(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case m := <-s.msgs:
		t.Fatalf("unexpected message %v", m)
	case <-time.After(d):
	}
}

// get opens a Get stream; the returned channel yields its error.
func (e *env) get(t *testing.T, auth string) (*stream[pb.Update], chan error, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	s := newStream[pb.Update](ctx)
	errc := make(chan error, 1)
	go func() { errc <- e.srv.Get(&pb.GetDestination{Path: auth}, s) }()
	t.Cleanup(cancel)
	return s, errc, cancel
}

func (e *env) getProfile(t *testing.T, auth, token string) *stream[pb.DestinationProfile] {
	t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	s := newStream[pb.DestinationProfile](ctx)
	go func() { _ = e.srv.GetProfile(&pb.GetDestination{Path: auth, ContextToken: token}, s) }()
	t.Cleanup(cancel)
	return s
}

// apply creates or updates the typed objects of a YAML document.
func (e *env) apply(t *testing.T, doc string) {
	t.Helper()
	typed, custom := kubefixture.Objects(t, doc)
	for _, o := range append(typed, custom...) {
		if err := applyObject(e, o); err != nil {
			t.Fatal(err)
		}
	}
}

func applyObject(e *env, o runtime.Object) error {
	if u, ok := o.(*unstructured.Unstructured); ok {
		gvr := v1alpha2.GroupVersionResource
		if u.GetKind() == "TrafficSplit" {
			gvr = TrafficSplitGVR
		}
		r := e.dyn.Resource(gvr).Namespace(u.GetNamespace())
		if _, err := r.Update(context.Background(), u, metav1UpdateOptions); err == nil {
			return nil
		}
		_, err := r.Create(context.Background(), u, metav1CreateOptions)
		return err
	}
	gvk := o.GetObjectKind().GroupVersionKind()
	gvr, _ := meta2gvr(gvk)
	tr := e.client.Tracker()
	ns := o.(interface{ GetNamespace() string }).GetNamespace()
	if err := tr.Update(gvr, o, ns); err == nil {
		return nil
	}
	return tr.Create(gvr, o, ns)
}

var (
	metav1UpdateOptions = metav1.UpdateOptions{}
	metav1CreateOptions = metav1.CreateOptions{}
)

func meta2gvr(gvk schema.GroupVersionKind) (schema.GroupVersionResource, bool) {
	plural := map[string]string{"Pod": "pods", "Service": "services", "EndpointSlice": "endpointslices", "Node": "nodes"}[gvk.Kind]
	return gvk.GroupVersion().WithResource(plural), plural != ""
}
