package realcp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/conduit-mesh/conduit/core/apis/conduit/v1alpha2"
	"github.com/conduit-mesh/conduit/core/destination"
	"github.com/conduit-mesh/conduit/core/identity"
	"github.com/conduit-mesh/conduit/pkg/grpcecho"
	"github.com/conduit-mesh/conduit/pkg/kubefixture"
	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/proxy/app"
	"github.com/conduit-mesh/conduit/proxy/config"
	"github.com/conduit-mesh/conduit/proxy/internal/logtest"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// The cluster's settings, as the chart installs them: the control plane's
// namespace, the trust domain, the audience of the proxies' projected
// ServiceAccount tokens (the identity service's --token-audience), and the
// issuer Secret and trust anchor ConfigMap of `mesh install`.
const (
	cpNS             = "conduit"
	trustDomain      = "cluster.local"
	tokenAudience    = "identity.conduit.dev"
	issuerSecret     = "conduit-identity-issuer"
	anchorsConfigMap = "conduit-identity-trust-roots"
	// loopbackNetworks are the proxies' cluster networks: loopback, where
	// every process is, and the Services' 10.96.0.0/16.
	loopbackNetworks = "10.0.0.0/8,127.0.0.0/8"
)

// Identities, spelled out as the injector hands them to the proxies:
// <sa>.<ns>.serviceaccount.identity.<control-plane-ns>.<trust-domain>.
const (
	identityID    = "conduit-identity.conduit.serviceaccount.identity.conduit.cluster.local"
	destinationID = "conduit-destination.conduit.serviceaccount.identity.conduit.cluster.local"
	clientID      = "frontend.shop.serviceaccount.identity.conduit.cluster.local"
	webID         = "web.shop.serviceaccount.identity.conduit.cluster.local"
	webV2ID       = "web-v2.shop.serviceaccount.identity.conduit.cluster.local"
)

// A pod whose proxy runs in the test.
type workload struct{ pod, ns, sa, id string }

var (
	identityPod    = workload{"conduit-identity-0", cpNS, "conduit-identity", identityID}
	destinationPod = workload{"conduit-destination-0", cpNS, "conduit-destination", destinationID}
	frontend       = workload{"frontend-0", "shop", "frontend", clientID}
	web0           = workload{"web-0", "shop", "web", webID}
	web1           = workload{"web-1", "shop", "web-v2", webV2ID}
)

// waitLimit bounds every wait of the tests.
const waitLimit = 15 * time.Second

// clusterYAML is what `mesh install` and the workloads' manifests put in the
// cluster before the test starts: the identity material, Service web with
// its two pods (each the pod of a proxy started later; loopback is their
// IP) and the ServiceProfile of web. The pods carry what the destination
// service reads to announce an mTLS identity: the control-plane-ns label
// the injector sets, and the ServiceAccount. The EndpointSlice comes later
// (webSlice), once a server proxy listens.
const clusterYAML = `
apiVersion: v1
kind: Secret
metadata:
  name: conduit-identity-issuer
  namespace: conduit
type: kubernetes.io/tls
data:
  tls.crt: {{issuer.crt}}
  tls.key: {{issuer.key}}
  ca.crt: {{anchors.b64}}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: conduit-identity-trust-roots
  namespace: conduit
data:
  ca-bundle.crt: {{anchors.json}}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  clusterIP: 10.96.0.80
  clusterIPs: [10.96.0.80]
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
---
apiVersion: conduit.dev/v1alpha2
kind: ServiceProfile
metadata:
  name: web.shop.svc.cluster.local
  namespace: shop
spec:
  routes:
  - name: GET /
    condition:
      all:
      - method: GET
      - pathRegex: /.*
`

// webPod is the Pod of workload w behind Service web: meshed (labelled
// with the control plane's namespace), at 127.0.0.1 like every process here.
func webPod(w workload) string {
	return fmt.Sprintf(`
---
apiVersion: v1
kind: Pod
metadata:
  name: %s
  namespace: %s
  labels: {app: web, conduit.dev/control-plane-ns: conduit}
spec:
  serviceAccountName: %s
  containers:
  - name: web
    ports: [{name: http, containerPort: 8080}]
status:
  phase: Running
  podIP: 127.0.0.1
  podIPs: [{ip: 127.0.0.1}]
`, w.pod, w.ns, w.sa)
}

// webSlice is the EndpointSlice of Service web with one endpoint: pod at
// 127.0.0.1 on port, its proxy's inbound port (on loopback, the port the
// kernel would redirect to it).
func webSlice(pod string, port int) string {
	return fmt.Sprintf(`
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-7x2kq
  namespace: shop
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- name: http
  port: %d
  protocol: TCP
endpoints:
- addresses: [127.0.0.1]
  conditions: {ready: true, serving: true, terminating: false}
  targetRef: {kind: Pod, name: %s, namespace: shop}
`, port, pod)
}

// cluster is a control plane on loopback over a fake API server: the
// identity and destination services, each behind its pod's proxy.
type cluster struct {
	client     *fake.Clientset
	dyn        *dynamicfake.FakeDynamicClient
	root       *x509.Certificate // the trust anchor
	issuer     *x509.Certificate // the identity service's issuer
	anchorsPEM []byte            // the ConfigMap's bundle
	anchors    *x509.CertPool

	identityAddr  string // the identity service's proxy (TLS): CONDUIT_PROXY_IDENTITY_ADDR
	identityAdmin string // the identity service's own admin server (/metrics)
	destAddr      string // the destination service's proxy (TLS): CONDUIT_PROXY_DESTINATION_ADDR
	nowhere       *nowhere

	mu       sync.Mutex
	users    map[string]string // token -> the username the fake API server authenticates it as
	reviews  map[string]int    // token -> TokenReviews of it
	watching map[string]bool   // resources some informer watches
}

// newCluster generates a trust anchor and an issuer as `mesh install`
// does, starts the identity service and its proxy (which gets its
// certificate from it over loopback plaintext, as the chart's
// plaintextIdentity), then the destination service and its proxy, and
// waits until the destination service's informers watch.
func newCluster(t *testing.T) *cluster {
	t.Helper()
	root, err := pki.NewRoot("root.conduit."+trustDomain, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := root.NewIssuer("identity.conduit."+trustDomain, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.KeyPEM(iss.Key)
	if err != nil {
		t.Fatal(err)
	}
	anchorsPEM := pki.CertPEM(root.Cert)
	b64 := base64.StdEncoding.EncodeToString
	anchorsJSON, _ := json.Marshal(string(anchorsPEM))
	doc := strings.NewReplacer(
		"{{issuer.crt}}", b64(pki.CertPEM(iss.Cert)),
		"{{issuer.key}}", b64(keyPEM),
		"{{anchors.b64}}", b64(anchorsPEM),
		"{{anchors.json}}", string(anchorsJSON),
	).Replace(clusterYAML + webPod(web0) + webPod(web1))
	typed, custom := kubefixture.Objects(t, doc)

	c := &cluster{
		client: fake.NewClientset(typed...),
		dyn: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
			map[schema.GroupVersionResource]string{v1alpha2.GroupVersionResource: v1alpha2.ListKind}, custom...),
		root: root.Cert, issuer: iss.Cert,
		users: map[string]string{}, reviews: map[string]int{}, watching: map[string]bool{},
		nowhere: startNowhere(t),
	}
	// The API server serves ServiceProfiles (the conduit-crds chart), not TrafficSplits.
	c.client.Resources = []*metav1.APIResourceList{{
		GroupVersion: v1alpha2.SchemeGroupVersion.String(),
		APIResources: []metav1.APIResource{{Name: v1alpha2.Resource, Namespaced: true, Kind: "ServiceProfile"}},
	}}
	c.client.PrependReactor("create", "tokenreviews", c.review(t))
	c.client.PrependWatchReactor("*", func(a k8stesting.Action) (bool, watch.Interface, error) {
		c.mu.Lock()
		c.watching[a.GetResource().Resource] = true
		c.mu.Unlock()
		return false, nil, nil
	})

	// The proxies' trust anchors come from the ConfigMap, as the chart's
	// configMapKeyRef reads them.
	cm, err := c.client.CoreV1().ConfigMaps(cpNS).Get(t.Context(), anchorsConfigMap, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.anchorsPEM = []byte(cm.Data[identity.AnchorBundleKey])
	c.anchors = x509.NewCertPool()
	if !c.anchors.AppendCertsFromPEM(c.anchorsPEM) {
		t.Fatalf("ConfigMap %s has no PEM trust anchors under %s", anchorsConfigMap, identity.AnchorBundleKey)
	}

	// The identity service, plaintext on loopback, and its pod's proxy.
	idLog := newLogBuffer(t, "identity service")
	idAddr, idAdmin := serve(t, "identity service", idLog, func(ctx context.Context, addr, admin string) error {
		return identity.Run(ctx, identity.ServerConfig{
			Config:       identity.Config{ControlPlaneNamespace: cpNS, TrustDomain: trustDomain, CertLifetime: 24 * time.Hour},
			Addr:         addr,
			AdminAddr:    admin,
			IssuerSecret: issuerSecret, TrustAnchorsConfigMap: anchorsConfigMap,
			TokenAudience: tokenAudience,
			DrainTimeout:  2 * time.Second,
		}, c.client, idLog.logger())
	})
	c.identityAdmin = idAdmin
	idProxy := c.startProxy(t, proxySpec{
		w: identityPod, token: c.token(t, identityPod, tokenAudience, true), inbound: idAddr,
		identityAddr: idAddr, identityServerName: "", // loopback plaintext to its own service
		destAddr: c.nowhere.addr, wait: true,
	})
	c.identityAddr = idProxy.InboundAddr().String()

	// The destination service and its pod's proxy, certified through the
	// identity service's proxy like every other.
	destLog := newLogBuffer(t, "destination service")
	destAddr, _ := serve(t, "destination service", destLog, func(ctx context.Context, addr, admin string) error {
		return destination.Run(ctx, destination.RunConfig{
			Config: destination.Config{
				Client: c.client, Dynamic: c.dyn,
				ClusterDomain: "cluster.local", TrustDomain: trustDomain, ControllerNamespace: cpNS,
				Logger: destLog.logger(),
			},
			Addr: addr, AdminAddr: admin, DrainTimeout: 2 * time.Second,
		})
	})
	destProxy := c.startProxy(t, proxySpec{
		w: destinationPod, token: c.token(t, destinationPod, tokenAudience, true), inbound: destAddr,
		identityAddr: c.identityAddr, identityServerName: identityID,
		destAddr: c.nowhere.addr, wait: true,
	})
	c.destAddr = destProxy.InboundAddr().String()

	// Objects created from now on reach the informers as watch events.
	eventually(t, "the destination service's informers watch", func() (bool, string) {
		c.mu.Lock()
		defer c.mu.Unlock()
		var missing []string
		for _, r := range []string{"services", "endpointslices", "pods"} {
			if !c.watching[r] {
				missing = append(missing, r)
			}
		}
		return len(missing) == 0, fmt.Sprintf("not watched: %v", missing)
	})
	return c
}

// review answers a TokenReview as the API server does for the tokens it
// issued: a known token whose audiences include the one asked for
// authenticates as its ServiceAccount; any other is refused.
func (c *cluster) review(t *testing.T) k8stesting.ReactionFunc {
	return func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		c.mu.Lock()
		user, known := c.users[tr.Spec.Token]
		c.reviews[tr.Spec.Token]++
		c.mu.Unlock()
		aud := tokenAudiences(tr.Spec.Token)
		switch {
		case !slices.Equal(tr.Spec.Audiences, []string{tokenAudience}):
			t.Errorf("the identity service asked a TokenReview for the audiences %q, want [%q] (the audience of the proxies' projected tokens)", tr.Spec.Audiences, tokenAudience)
			tr.Status = authnv1.TokenReviewStatus{Error: "unexpected audiences"}
		case !known:
			tr.Status = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		case !slices.Contains(aud, tokenAudience):
			tr.Status = authnv1.TokenReviewStatus{Error: fmt.Sprintf("token audiences %q is invalid for the target audiences %q", aud, tr.Spec.Audiences)}
		default:
			ns, sa, _ := strings.Cut(strings.TrimPrefix(user, "system:serviceaccount:"), ":")
			tr.Status = authnv1.TokenReviewStatus{
				Authenticated: true, Audiences: []string{tokenAudience},
				User: authnv1.UserInfo{Username: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
					Extra: map[string]authnv1.ExtraValue{"authentication.kubernetes.io/serviceaccount-name": {sa}}},
			}
		}
		return true, tr, nil
	}
}

// reviewsOf is how many TokenReviews the fake API server answered for tok.
func (c *cluster) reviewsOf(tok string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reviews[tok]
}

// token is a projected ServiceAccount token: its file and its value.
type token struct{ path, value string }

// token mints a token for w's ServiceAccount with audience aud, shaped as
// the kubelet's (a JWT: the identity service reads its claims to explain
// a refusal) and writes it to a file. The fake API server authenticates it
// only when known.
func (c *cluster) token(t *testing.T, w workload, aud string, known bool) token {
	t.Helper()
	user := "system:serviceaccount:" + w.ns + ":" + w.sa
	claims, err := json.Marshal(map[string]any{
		"aud": []string{aud}, "sub": user, "iss": "https://kubernetes.default.svc.cluster.local",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
		"kubernetes.io": map[string]any{"namespace": w.ns, "serviceaccount": map[string]string{"name": w.sa}},
	})
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 32)
	_, _ = rand.Read(sig)
	enc := base64.RawURLEncoding.EncodeToString
	tok := enc([]byte(`{"alg":"RS256","kid":"realcp"}`)) + "." + enc(claims) + "." + enc(sig)
	if known {
		c.mu.Lock()
		c.users[tok] = user
		c.mu.Unlock()
	}
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return token{path: path, value: tok}
}

// tokenAudiences reads the aud claim of a JWT, as the API server checks it.
func tokenAudiences(tok string) []string {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var c struct {
		Aud []string `json:"aud"`
	}
	_ = json.Unmarshal(payload, &c)
	return c.Aud
}

// apply creates or replaces the typed objects of a YAML document, as
// kubectl apply would: the informers see an add or an update.
func (c *cluster) apply(t *testing.T, doc string) {
	t.Helper()
	typed, custom := kubefixture.Objects(t, doc)
	if len(custom) > 0 {
		t.Fatalf("apply takes core objects only, not %d custom resources", len(custom))
	}
	tr := c.client.Tracker()
	for _, o := range typed {
		gvr, _ := meta.UnsafeGuessKindToResource(o.GetObjectKind().GroupVersionKind())
		ns := o.(metav1.Object).GetNamespace()
		err := tr.Update(gvr, o, ns)
		if apierrors.IsNotFound(err) {
			err = tr.Create(gvr, o, ns)
		}
		if err != nil {
			t.Fatalf("apply %s %s/%s: %v", gvr.Resource, ns, o.(metav1.Object).GetName(), err)
		}
	}
}

// identityMetric is the value of the identity service's metric name with
// labels (name="value" text), 0 when absent.
func (c *cluster) identityMetric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	return metricSum(t, c.identityAdmin, name, labels...)
}

// serve runs a control-plane service (run listens on addr and serves its
// /ready on admin) until the test ends, and returns once it is ready. A
// port taken between freeAddr and run's listen is tried again.
func serve(t *testing.T, name string, logs *logBuffer, run func(ctx context.Context, addr, admin string) error) (addr, admin string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		addr, admin = freeAddr(t), freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- run(ctx, addr, admin) }()
		err := waitHTTPReady(t, "http://"+admin+"/ready", done)
		if err == nil {
			t.Cleanup(func() {
				cancel()
				select {
				case err := <-done:
					if err != nil {
						t.Errorf("%s stopped with %v", name, err)
					}
				case <-time.After(waitLimit):
					t.Errorf("%s did not stop within %v", name, waitLimit)
				}
			})
			return addr, admin
		}
		cancel()
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "listen" && attempt < 3 {
			continue
		}
		t.Fatalf("%s: %v\n%s", name, err, logs)
	}
}

// waitHTTPReady polls url until it answers 200, or the service's run ends.
func waitHTTPReady(t *testing.T, url string, done <-chan error) error {
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last string
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err != nil {
			last = err.Error()
		} else {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%d %s", resp.StatusCode, bytes.TrimSpace(body))
		}
		select {
		case err := <-done:
			if err == nil {
				err = errors.New("stopped before it was ready")
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("%s not ready within %v (last: %s)", url, waitLimit, last)
		case <-tick.C:
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proxySpec is a proxy as the injector configures it, on loopback.
type proxySpec struct {
	w     workload
	token token
	// inbound is where the inbound proxy forwards: the application (the
	// kernel's original destination, 127.0.0.1:<port>).
	inbound string
	// identityAddr and identityServerName reach the identity service
	// (an empty name: loopback plaintext).
	identityAddr, identityServerName string
	destAddr                         string
	// wait for the first certificate.
	wait bool
}

// meshProxy is a running proxy and its log.
type meshProxy struct {
	*app.Proxy
	logs *logBuffer
}

// startProxy starts a proxy of spec until the test ends. Its outbound
// original destination is c.nowhere: a request reaches its application
// only through the endpoints the destination service announces.
func (c *cluster) startProxy(t *testing.T, s proxySpec) *meshProxy {
	t.Helper()
	env := map[string]string{
		"CONDUIT_PROXY_OUTBOUND_LISTEN_ADDR":   "127.0.0.1:0",
		"CONDUIT_PROXY_INBOUND_LISTEN_ADDR":    "127.0.0.1:0",
		"CONDUIT_PROXY_ADMIN_LISTEN_ADDR":      "127.0.0.1:0",
		"CONDUIT_PROXY_IPV6":                   "off",
		"CONDUIT_PROXY_POD_NAME":               s.w.pod,
		"CONDUIT_PROXY_POD_NAMESPACE":          s.w.ns,
		"CONDUIT_PROXY_CLUSTER_DOMAIN":         "cluster.local",
		"CONDUIT_PROXY_DESTINATION_ADDR":       s.destAddr,
		"CONDUIT_PROXY_DESTINATION_NAME":       destinationID,
		"CONDUIT_PROXY_DESTINATION_CONTEXT":    fmt.Sprintf(`{"ns":%q,"pod":%q}`, s.w.ns, s.w.pod),
		"CONDUIT_PROXY_IDENTITY_ADDR":          s.identityAddr,
		"CONDUIT_PROXY_IDENTITY_SERVER_NAME":   s.identityServerName,
		"CONDUIT_PROXY_IDENTITY_NAME":          s.w.id,
		"CONDUIT_PROXY_IDENTITY_TOKEN_FILE":    s.token.path,
		"CONDUIT_PROXY_IDENTITY_TRUST_ANCHORS": string(c.anchorsPEM),
		"CONDUIT_PROXY_SHUTDOWN_GRACE_PERIOD":  "2s",
		// The first request of a proxy opens its stream to the destination
		// service; the default 1s would send it to the original destination
		// on a loaded machine (go test -race on 2 cores).
		"CONDUIT_PROXY_DISCOVERY_TIMEOUT": "5s",
		// Every process here is on loopback, outside the default cluster
		// networks: looked up like pods.
		"CONDUIT_PROXY_CLUSTER_NETWORKS": loopbackNetworks,
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	logs := newLogBuffer(t, "proxy of "+s.w.pod)
	ctx, cancel := context.WithCancel(context.Background())
	p, err := app.Start(ctx, cfg, logs.logger(), app.Overrides{
		InboundOrigDst:  origdst.Static(netip.MustParseAddrPort(s.inbound)),
		OutboundOrigDst: origdst.Static(netip.MustParseAddrPort(c.nowhere.addr)),
	})
	if err != nil {
		cancel()
		t.Fatalf("start the proxy of %s: %v", s.w.pod, err)
	}
	done := make(chan struct{})
	go func() { _ = p.Wait(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitLimit):
			t.Errorf("the proxy of %s did not stop within %v", s.w.pod, waitLimit)
		}
	})
	if s.wait {
		select {
		case <-p.Identity.Ready():
		case <-time.After(waitLimit):
			t.Fatalf("the proxy of %s got no certificate within %v:\n%s", s.w.pod, waitLimit, logs)
		}
	}
	return &meshProxy{Proxy: p, logs: logs}
}

// workloadProxy starts the proxy of pod w, certified with a token of its
// own ServiceAccount, in front of the application at appAddr.
func (c *cluster) workloadProxy(t *testing.T, w workload, appAddr string) *meshProxy {
	t.Helper()
	return c.startProxy(t, proxySpec{
		w: w, token: c.token(t, w, tokenAudience, true), inbound: appAddr,
		identityAddr: c.identityAddr, identityServerName: identityID, destAddr: c.destAddr, wait: true,
	})
}

// nowhere is a listener no connection should reach: the workload proxies'
// original destination (they must route by the destination service's
// answer) and the control-plane proxies' destination address (nothing
// calls out through them).
type nowhere struct {
	addr  string
	conns atomic.Int64
}

func startNowhere(t *testing.T) *nowhere {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &nowhere{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.conns.Add(1)
			_ = c.Close()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		if k := n.conns.Load(); k > 0 {
			t.Errorf("%d connection(s) reached the original destination %s: a proxy routed around the destination service", k, n.addr)
		}
	})
	return n
}

// reply is what the application answers: the conduit-client-id header it
// received, and which pod it is.
type reply struct {
	Pod       string   `json:"pod"`
	ClientIDs []string `json:"clientIds"`
	Proto     string   `json:"proto"`
}

// startApp serves an application for pod: HTTP/1.1 and h2c requests get
// a reply in JSON, gRPC ones the grpcecho service (which names the pod and
// the conduit-client-id it saw in its response headers).
func startApp(t *testing.T, pod string) string {
	t.Helper()
	g := grpc.NewServer()
	grpcecho.Register(g, pod)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
			g.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reply{Pod: pod, ClientIDs: r.Header.Values("Conduit-Client-Id"), Proto: r.Proto})
	})
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &protos, ReadHeaderTimeout: 5 * time.Second}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close(); g.Stop() })
	return l.Addr().String()
}

// httpVia is an HTTP client whose every connection goes to the outbound
// proxy of p, as iptables would send the application's.
func httpVia(t *testing.T, p *meshProxy) *http.Client {
	out := p.OutboundAddr().String()
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", out)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// grpcVia is a gRPC connection to target through the outbound proxy of p.
func grpcVia(t *testing.T, p *meshProxy, target string) *grpc.ClientConn {
	t.Helper()
	out := p.OutboundAddr().String()
	conn, err := grpc.NewClient("passthrough:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", out)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// get sends GET url with a forged conduit-client-id (the server proxy must
// replace it) and decodes the application's reply.
func get(ctx context.Context, c *http.Client, url string) (reply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return reply{}, err
	}
	req.Header.Set("Conduit-Client-Id", "forged.identity")
	resp, err := c.Do(req)
	if err != nil {
		return reply{}, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return reply{}, fmt.Errorf("GET %s: status %d, conduit-proxy-error %q: %s", url, resp.StatusCode, resp.Header.Get("Conduit-Proxy-Error"), bytes.TrimSpace(body))
	}
	var r reply
	if err := json.Unmarshal(body, &r); err != nil {
		return reply{}, fmt.Errorf("GET %s: not the application's reply: %w: %q", url, err, body)
	}
	return r, nil
}

// httpGet is GET url (an admin server's): its status and body.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metricLines are the samples of metric name, at the admin server admin,
// whose labels hold every one of labels (name="value" text).
func metricLines(t *testing.T, admin, name string, labels ...string) []string {
	t.Helper()
	status, text := httpGet(t, "http://"+admin+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d", admin, status)
	}
	var out []string
lines:
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue lines
			}
		}
		out = append(out, line)
	}
	return out
}

// metricSum adds up the samples metricLines finds.
func metricSum(t *testing.T, admin, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	for _, line := range metricLines(t, admin, name, labels...) {
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// eventually polls cond until it holds, for waitLimit at most; detail says
// what was seen last.
func eventually(t *testing.T, what string, cond func() (ok bool, detail string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitLimit)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, detail := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("not within %v: %s (last: %s)", waitLimit, what, detail)
		case <-tick.C:
		}
	}
}

// logBuffer keeps a component's log; the test prints it when it fails.
type logBuffer struct{ all logtest.Buffer }

func newLogBuffer(t *testing.T, name string) *logBuffer {
	l := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log of the %s:\n%s", name, l)
		}
	})
	return l
}

func (l *logBuffer) Write(p []byte) (int, error) { return l.all.Write(p) }

// String is the log's last 16 KiB.
func (l *logBuffer) String() string {
	s := l.all.String()
	if len(s) > 16<<10 {
		s = "...\n" + s[len(s)-16<<10:]
	}
	return s
}

// line returns the first line of the log holding every one of parts.
func (l *logBuffer) line(parts ...string) (string, bool) {
lines:
	for _, line := range strings.Split(l.all.String(), "\n") {
		for _, p := range parts {
			if !strings.Contains(line, p) {
				continue lines
			}
		}
		return line, true
	}
	return "", false
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}
