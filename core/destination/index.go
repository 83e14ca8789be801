package destination

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
)

// TrafficSplitGVR is SMI's TrafficSplit, served as dstOverrides when its CRD exists.
var TrafficSplitGVR = schema.GroupVersionResource{Group: "split.smi-spec.io", Version: "v1alpha2", Resource: "trafficsplits"}

// ZoneLabel is the well-known node label the zone of an endpoint falls back to.
const ZoneLabel = "topology.kubernetes.io/zone"

const (
	indexService = "service" // EndpointSlices and TrafficSplits by ns/service
	indexPod     = "pod"     // EndpointSlices by ns/pod of their targets
	indexIP      = "ip"      // Pods by pod IP, Services by cluster IP
)

// Config configures the destination service.
type Config struct {
	Client kubernetes.Interface
	// Dynamic reads ServiceProfiles and TrafficSplits; nil disables both.
	Dynamic dynamic.Interface
	// ServiceProfiles and TrafficSplits say whether their CRDs are installed
	// (an informer on a missing CRD never syncs).
	ServiceProfiles, TrafficSplits bool

	ClusterDomain       string // cluster.local
	TrustDomain         string // cluster.local
	ControllerNamespace string // conduit
	DefaultOpaquePorts  string // DefaultOpaquePorts
	Annotators          []EndpointAnnotator
	// Recorder records Events on ServiceProfiles that have invalid routes and
	// on Services whose opaque-ports annotation is invalid; may be nil.
	Recorder record.EventRecorder
	Logger   *slog.Logger
}

// Index watches the cluster and computes the state of the watched targets.
type Index struct {
	cfg           Config
	log           *slog.Logger
	defaultOpaque portSet
	factory       informers.SharedInformerFactory
	dynFactory    dynamicinformer.DynamicSharedInformerFactory
	services      cache.SharedIndexInformer
	slices        cache.SharedIndexInformer
	pods          cache.SharedIndexInformer
	nodes         cache.SharedIndexInformer
	profilesInf   cache.SharedIndexInformer // nil when disabled
	splitsInf     cache.SharedIndexInformer // nil when disabled
	svcLister     listerscorev1.ServiceLister
	podLister     listerscorev1.PodLister
	nodeLister    listerscorev1.NodeLister
	queue         *workqueue.Typed[depKey]
	endpoints     *hub[*epState]
	profiles      *hub[*profileState]
	badMu         sync.Mutex
	badSeen       map[string]struct{} // invalid profiles (uid@resourceVersion) and Service annotations (uid=value) already reported
	synced        chan struct{}
}

// NewIndex builds the informers; Run starts them.
func NewIndex(cfg Config) (*Index, error) {
	if cfg.Client == nil {
		return nil, errors.New("destination: a Kubernetes client is required")
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.TrustDomain == "" {
		cfg.TrustDomain = "cluster.local"
	}
	if cfg.ControllerNamespace == "" {
		cfg.ControllerNamespace = "conduit"
	}
	if cfg.DefaultOpaquePorts == "" {
		cfg.DefaultOpaquePorts = DefaultOpaquePorts
	}
	if cfg.Annotators == nil {
		cfg.Annotators = DefaultAnnotators
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Dynamic == nil {
		cfg.ServiceProfiles, cfg.TrafficSplits = false, false
	}
	def, err := parsePorts(cfg.DefaultOpaquePorts, nil)
	if err != nil {
		return nil, fmt.Errorf("destination: --default-opaque-ports: %w", err)
	}
	x := &Index{
		cfg:           cfg,
		log:           cfg.Logger,
		defaultOpaque: def,
		queue:         workqueue.NewTyped[depKey](),
		endpoints:     newHub[*epState](),
		profiles:      newHub[*profileState](),
		badSeen:       map[string]struct{}{},
		synced:        make(chan struct{}),
	}
	x.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0, informers.WithTransform(trim))
	x.services = x.factory.Core().V1().Services().Informer()
	x.slices = x.factory.Discovery().V1().EndpointSlices().Informer()
	x.pods = x.factory.Core().V1().Pods().Informer()
	x.nodes = x.factory.Core().V1().Nodes().Informer()
	x.svcLister = x.factory.Core().V1().Services().Lister()
	x.podLister = x.factory.Core().V1().Pods().Lister()
	x.nodeLister = x.factory.Core().V1().Nodes().Lister()

	if err := x.slices.AddIndexers(cache.Indexers{indexService: sliceServiceIndex, indexPod: slicePodIndex}); err != nil {
		return nil, fmt.Errorf("destination: index endpointslices: %w", err)
	}
	if err := x.pods.AddIndexers(cache.Indexers{indexIP: podIPIndex}); err != nil {
		return nil, fmt.Errorf("destination: index pods: %w", err)
	}
	if err := x.services.AddIndexers(cache.Indexers{indexIP: serviceIPIndex}); err != nil {
		return nil, fmt.Errorf("destination: index services: %w", err)
	}
	if cfg.ServiceProfiles || cfg.TrafficSplits {
		x.dynFactory = dynamicinformer.NewDynamicSharedInformerFactory(cfg.Dynamic, 0)
	}
	if cfg.ServiceProfiles {
		x.profilesInf = x.dynFactory.ForResource(v1alpha2.GroupVersionResource).Informer()
	}
	if cfg.TrafficSplits {
		x.splitsInf = x.dynFactory.ForResource(TrafficSplitGVR).Informer()
		if err := x.splitsInf.AddIndexers(cache.Indexers{indexService: splitServiceIndex}); err != nil {
			return nil, fmt.Errorf("destination: index trafficsplits: %w", err)
		}
	}
	if err := x.addHandlers(); err != nil {
		return nil, err
	}
	return x, nil
}

// trim drops what the index never reads, to keep the caches small.
func trim(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
		if ann := a.GetAnnotations(); ann != nil {
			delete(ann, "kubectl.kubernetes.io/last-applied-configuration")
		}
	}
	if p, ok := obj.(*corev1.Pod); ok {
		p.Spec.Volumes = nil
		// Only the containers' port names are read (opaque-ports and
		// skip-inbound-ports may name them; native sidecars' too, as the
		// injector resolves them: pkg/ports/podports).
		for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
			for i := range cs {
				cs[i] = corev1.Container{Name: cs[i].Name, Ports: cs[i].Ports}
			}
		}
		p.Status.ContainerStatuses = nil
		p.Status.InitContainerStatuses = nil
	}
	if n, ok := obj.(*corev1.Node); ok {
		n.Status = corev1.NodeStatus{}
		n.Spec = corev1.NodeSpec{}
	}
	return obj, nil
}

func sliceServiceIndex(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := s.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{s.Namespace + "/" + name}, nil
}

func slicePodIndex(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ep := range s.Endpoints {
		if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
			ns := ep.TargetRef.Namespace
			if ns == "" {
				ns = s.Namespace
			}
			out = append(out, ns+"/"+ep.TargetRef.Name)
		}
	}
	return out, nil
}

func podIPIndex(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.HostNetwork || podTerminal(p) {
		return nil, nil
	}
	return podIPs(p), nil
}

func podIPs(p *corev1.Pod) []string {
	var out []string
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	if len(out) == 0 && p.Status.PodIP != "" {
		out = append(out, p.Status.PodIP)
	}
	return out
}

func podTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func serviceIPIndex(obj any) ([]string, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	var out []string
	for _, ip := range s.Spec.ClusterIPs {
		// Canonical form, as the authorities are looked up.
		if a, err := netip.ParseAddr(ip); err == nil {
			out = append(out, a.Unmap().String())
		}
	}
	return out, nil
}

func splitServiceIndex(obj any) ([]string, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, nil
	}
	svc, _, _ := unstructured.NestedString(u.Object, "spec", "service")
	if svc == "" {
		return nil, nil
	}
	return []string{u.GetNamespace() + "/" + svc}, nil
}

// tombstone unwraps the object of a delete event.
func tombstone(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (x *Index) addHandlers() error {
	both := func(f func(obj any)) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    f,
			UpdateFunc: func(old, cur any) { f(old); f(cur) },
			DeleteFunc: func(obj any) { f(tombstone(obj)) },
		}
	}
	handlers := []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{x.services, both(func(obj any) {
			if s, ok := obj.(*corev1.Service); ok {
				x.queue.Add(serviceDep(s.Namespace, s.Name))
				// The streams on "<cluster-ip>:<port>" that do not follow
				// this Service yet (the IP was nobody's, or another's)
				// re-resolve it.
				ips, _ := serviceIPIndex(s)
				for _, ip := range ips {
					x.queue.Add(ipDep(ip))
				}
			}
		})},
		{x.slices, both(func(obj any) {
			if s, ok := obj.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] != "" {
				x.queue.Add(serviceDep(s.Namespace, s.Labels[discoveryv1.LabelServiceName]))
			}
		})},
		{x.pods, cache.ResourceEventHandlerFuncs{
			AddFunc: x.podChanged,
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*corev1.Pod)
				c, ok2 := cur.(*corev1.Pod)
				if ok1 && ok2 && !podRelevantChange(o, c) {
					return
				}
				x.podChanged(old)
				x.podChanged(cur)
			},
			DeleteFunc: func(obj any) { x.podChanged(tombstone(obj)) },
		}},
		{x.nodes, cache.ResourceEventHandlerFuncs{
			UpdateFunc: func(old, cur any) {
				o, ok1 := old.(*corev1.Node)
				c, ok2 := cur.(*corev1.Node)
				if ok1 && ok2 && o.Labels[ZoneLabel] != c.Labels[ZoneLabel] {
					x.dirtyAll()
				}
			},
		}},
	}
	if x.profilesInf != nil {
		handlers = append(handlers, struct {
			inf cache.SharedIndexInformer
			h   cache.ResourceEventHandler
		}{x.profilesInf, both(func(obj any) {
			if u, ok := obj.(*unstructured.Unstructured); ok {
				if ns, name, ok := x.serviceOfProfileName(u.GetName()); ok {
					x.queue.Add(serviceDep(ns, name))
				}
			}
		})})
	}
	if x.splitsInf != nil {
		handlers = append(handlers, struct {
			inf cache.SharedIndexInformer
			h   cache.ResourceEventHandler
		}{x.splitsInf, both(func(obj any) {
			keys, _ := splitServiceIndex(obj)
			for _, k := range keys {
				ns, name, _ := strings.Cut(k, "/")
				x.queue.Add(serviceDep(ns, name))
			}
		})})
	}
	for _, h := range handlers {
		if _, err := h.inf.AddEventHandler(h.h); err != nil {
			return fmt.Errorf("destination: add event handler: %w", err)
		}
	}
	return nil
}

// podRelevantChange reports whether a pod update changes anything an
// endpoint carries. Most pod updates are the kubelet's status updates
// (conditions, container states), which change none of it: recomputing every
// Service behind the pod for each of them would be costly.
func podRelevantChange(o, c *corev1.Pod) bool {
	return !maps.Equal(o.Labels, c.Labels) || !maps.Equal(o.Annotations, c.Annotations) ||
		o.Spec.ServiceAccountName != c.Spec.ServiceAccountName || o.Spec.NodeName != c.Spec.NodeName ||
		o.Status.Phase != c.Status.Phase || strings.Join(podIPs(o), ",") != strings.Join(podIPs(c), ",") ||
		o.DeletionTimestamp.IsZero() != c.DeletionTimestamp.IsZero() ||
		!sameControllers(o.OwnerReferences, c.OwnerReferences)
}

// sameControllers reports whether two lists of ownerReferences name the same
// controllers (kind and name, in order): what podLabels reads. A pod
// orphaned, or adopted by another ReplicaSet, changes its owner label.
func sameControllers(a, b []metav1.OwnerReference) bool {
	i, j := 0, 0
	for {
		for i < len(a) && !isController(a[i]) {
			i++
		}
		for j < len(b) && !isController(b[j]) {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		if a[i].Kind != b[j].Kind || a[i].Name != b[j].Name {
			return false
		}
		i++
		j++
	}
}

func isController(o metav1.OwnerReference) bool { return o.Controller != nil && *o.Controller }

func (x *Index) podChanged(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	for _, ip := range podIPs(p) {
		x.queue.Add(ipDep(ip))
	}
	objs, _ := x.slices.GetIndexer().ByIndex(indexPod, p.Namespace+"/"+p.Name)
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok && s.Labels[discoveryv1.LabelServiceName] != "" {
			x.queue.Add(serviceDep(s.Namespace, s.Labels[discoveryv1.LabelServiceName]))
		}
	}
}

func (x *Index) dirtyAll() {
	seen := map[depKey]struct{}{}
	for _, k := range []depKind{depService, depIP} {
		for _, d := range x.endpoints.depsOfKind(k) {
			seen[d] = struct{}{}
		}
		for _, d := range x.profiles.depsOfKind(k) {
			seen[d] = struct{}{}
		}
	}
	for d := range seen {
		x.queue.Add(d)
	}
}

// serviceOfProfileName parses "svc.ns.svc.<cluster-domain>".
func (x *Index) serviceOfProfileName(name string) (ns, svc string, ok bool) {
	t, err := parseAuthority(name+":80", x.cfg.ClusterDomain)
	if err != nil || !t.known || t.ip.IsValid() || t.hostname != "" {
		return "", "", false
	}
	return t.ns, t.name, true
}

// Run starts the informers, waits for their caches and then processes
// changes until ctx ends.
func (x *Index) Run(ctx context.Context) error {
	x.factory.Start(ctx.Done())
	if x.dynFactory != nil {
		x.dynFactory.Start(ctx.Done())
	}
	syncs := []cache.InformerSynced{x.services.HasSynced, x.slices.HasSynced, x.pods.HasSynced, x.nodes.HasSynced}
	if x.profilesInf != nil {
		syncs = append(syncs, x.profilesInf.HasSynced)
	}
	if x.splitsInf != nil {
		syncs = append(syncs, x.splitsInf.HasSynced)
	}
	start := time.Now()
	if !cache.WaitForCacheSync(ctx.Done(), syncs...) {
		x.queue.ShutDown()
		return fmt.Errorf("destination: informer caches did not sync: %w", ctx.Err())
	}
	x.log.Info("informer caches synced", "took", time.Since(start).Round(time.Millisecond).String())
	close(x.synced)
	go func() {
		<-ctx.Done()
		x.queue.ShutDown()
	}()
	for {
		d, shutdown := x.queue.Get()
		if shutdown {
			return nil
		}
		x.endpoints.dirty(d)
		x.profiles.dirty(d)
		x.queue.Done(d)
	}
}

// Synced is closed once every informer cache has synced.
func (x *Index) Synced() <-chan struct{} { return x.synced }

// ready reports whether the caches have synced.
func (x *Index) ready() bool {
	select {
	case <-x.synced:
		return true
	default:
		return false
	}
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
