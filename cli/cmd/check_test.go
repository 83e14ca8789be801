package cmd

import (
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	admv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authorization/v1"
	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	kversion "k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	k8stesting "k8s.io/client-go/testing"
)

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// healthyCluster returns the objects of a working installation of v1.2.3.
func healthyCluster(t *testing.T) map[string]runtime.Object {
	t.Helper()
	ns := "conduit"
	objs := map[string]runtime.Object{
		"namespace": &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		"config": &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: configMapName, Namespace: ns},
			Data: map[string]string{"values": "proxy:\n  image:\n    name: proxy\n    version: v1.2.3\n"}},
		"roots": &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: trustRootsName, Namespace: ns},
			Data: map[string]string{trustRootsKey: string(readFile(t, "testdata/ca.crt"))}},
		"issuer": &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: issuerSecretName, Namespace: ns},
			Data: map[string][]byte{"tls.crt": readFile(t, "testdata/issuer.crt"), "tls.key": readFile(t, "testdata/issuer.key"), "ca.crt": readFile(t, "testdata/ca.crt")}},
		"lease": &coordv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node1", Namespace: corev1.NamespaceNodeLease},
			Spec: coordv1.LeaseSpec{RenewTime: &metav1.MicroTime{Time: time.Now().Add(-5 * time.Second)}}},
	}
	one := int32(1)
	for _, c := range controlPlaneComponents {
		objs["deploy-"+c] = &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "conduit-" + c, Namespace: ns, Labels: map[string]string{versionLabel: "v1.2.3"}},
			Spec: appsv1.DeploymentSpec{Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{componentLabel: c}},
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: c, Image: "ghcr.io/conduit-mesh/controller:v1.2.3"}}}}},
			Status: appsv1.DeploymentStatus{ReadyReplicas: 1, UpdatedReplicas: 1},
		}
	}
	// The injector's serving certificate and the webhook's caBundle.
	ca, err := pki.NewRoot("webhook-ca", time.Hour*24*365)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.NewKey()
	leaf, err := ca.SignLeaf("conduit-injector.conduit.svc", key.Public(), time.Hour*24*365)
	if err != nil {
		t.Fatal(err)
	}
	objs["webhook"] = &admv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: webhookName},
		Webhooks: []admv1.MutatingWebhook{{Name: "proxy-injector.conduit.dev", ClientConfig: admv1.WebhookClientConfig{
			Service: &admv1.ServiceReference{Name: injectorServiceName, Namespace: ns}, CABundle: pki.CertPEM(ca.Cert)}}}}
	objs["injector-tls"] = &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: injectorTLSSecret, Namespace: ns},
		Data: map[string][]byte{"tls.crt": pki.CertPEM(leaf)}}
	ready := true
	objs["endpoints"] = &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "conduit-injector-abc", Namespace: ns,
		Labels: map[string]string{discoveryv1.LabelServiceName: injectorServiceName}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.0.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: &ready}}}}
	objs["meshed"] = meshedPod("web-1", "shop", "v1.2.3", true)
	objs["node"] = &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node1"}, Spec: corev1.NodeSpec{PodCIDRs: []string{"10.244.0.0/24", "fd10:244::/64"}}}
	objs["service-cidr"] = &networkingv1.ServiceCIDR{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes"}, Spec: networkingv1.ServiceCIDRSpec{CIDRs: []string{"10.96.0.0/16", "fd10:96::/112"}}}
	for _, c := range controlPlaneComponents {
		name := "conduit-conduit-" + c
		objs["cr-"+c] = &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name}}
		objs["crb-"+c] = &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name}}
	}
	return objs
}

// proxyChain is the PEM chain a proxy of healthyCluster serves: a leaf
// valid for an hour from now, signed by testdata's issuer.
func proxyChain(t *testing.T) string {
	t.Helper()
	certs, err := pki.ParseCertificates(readFile(t, "testdata/issuer.crt"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey(readFile(t, "testdata/issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	issuer := &pki.CA{Cert: certs[0], Key: key}
	lk, _ := pki.NewKey()
	leaf, err := issuer.SignLeaf("default.shop.serviceaccount.identity.conduit.cluster.local", lk.Public(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return string(pki.CertPEM(leaf)) + string(pki.CertPEM(issuer.Cert))
}

func meshedPod(name, ns, version string, ready bool) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
		Labels: map[string]string{controlPlaneNSLabel: "conduit", proxyVersionLabel: version}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, InitContainerStatuses: []corev1.ContainerStatus{{Name: proxyContainerName, Ready: ready}}}}
}

func kubeOf(objs map[string]runtime.Object) *Kube {
	var list []runtime.Object
	for _, o := range objs {
		list = append(list, o)
	}
	k, cs := fakeKube(true, list...)
	cs.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &kversion.Info{Major: "1", Minor: "32"}
	return k
}

func issuerSecret(t *testing.T, ca *pki.CA) *corev1.Secret {
	k, _ := pki.KeyPEM(ca.Key)
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: issuerSecretName, Namespace: "conduit"},
		Data: map[string][]byte{"tls.crt": pki.CertPEM(ca.Cert), "tls.key": k}}
}

func TestCheckGolden(t *testing.T) {
	withVersion(t, "v1.2.3")
	serveProxyCertificateOf(t, "shop/web-1", http.StatusOK, proxyChain(t))
	out, _, err := runWith(t, kubeOf(healthyCluster(t)), "check", "--proxy", "--wait", "0s")
	if err != nil {
		t.Fatalf("check failed: %v\n%s", err, out)
	}
	golden(t, "check_healthy.golden", out)
	out, _, err = runWith(t, kubeOf(healthyCluster(t)), "check", "--wait", "0s", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "check_healthy_json.golden", out)
}

func TestCheckFindings(t *testing.T) {
	withVersion(t, "v1.2.3")
	root := func(d time.Duration) *pki.CA {
		ca, err := pki.NewRoot("short-root", d)
		if err != nil {
			t.Fatal(err)
		}
		return ca
	}
	soon := root(10 * 24 * time.Hour)
	soonIssuer, _ := soon.NewIssuer("soon-issuer", 10*24*time.Hour)
	other := root(365 * 24 * time.Hour)
	otherIssuer, _ := other.NewIssuer("stranger", 365*24*time.Hour)
	csIssuer := ekuCA(t, other, "code-signing issuer", x509.ExtKeyUsageCodeSigning)
	csRoot := ekuCA(t, nil, "code-signing root", x509.ExtKeyUsageCodeSigning)
	csRootIssuer := ekuCA(t, csRoot, "issuer of the code-signing root")

	cases := []struct {
		name    string
		args    []string
		mutate  func(map[string]runtime.Object)
		now     time.Duration // clock offset
		success bool
		want    []string
	}{
		{"healthy", nil, func(map[string]runtime.Object) {}, 0, true, []string{"Status check results are √"}},
		{"pods not ready", nil, func(o map[string]runtime.Object) {
			o["deploy-destination"].(*appsv1.Deployment).Status.ReadyReplicas = 0
		}, 0, false, []string{"× control plane pods are ready", "conduit-destination: 0 of 1 pods ready", "kubectl -n conduit get pods"}},
		{"webhook without caBundle", nil, func(o map[string]runtime.Object) {
			o["webhook"].(*admv1.MutatingWebhookConfiguration).Webhooks[0].ClientConfig.CABundle = nil
		}, 0, false, []string{"× the proxy injector webhook is configured", "has no caBundle yet"}},
		{"webhook configuration deleted", nil, func(o map[string]runtime.Object) {
			delete(o, "webhook")
		}, 0, false, []string{"MutatingWebhookConfiguration conduit-proxy-injector not found: re-apply"}},
		{"injector cert not from the caBundle", nil, func(o map[string]runtime.Object) {
			o["injector-tls"].(*corev1.Secret).Data["tls.crt"] = pki.CertPEM(other.Cert)
		}, 0, false, []string{"does not verify against the caBundle"}},
		{"RBAC missing", nil, func(o map[string]runtime.Object) {
			delete(o, "crb-identity")
		}, 0, false, []string{"× the control plane's RBAC", "ClusterRoleBinding conduit-conduit-identity"}},
		{"no ready injector endpoint", nil, func(o map[string]runtime.Object) {
			f := false
			o["endpoints"].(*discoveryv1.EndpointSlice).Endpoints[0].Conditions.Ready = &f
		}, 0, false, []string{"× the proxy injector webhook is reachable"}},
		{"issuer expiring soon warns", nil, func(o map[string]runtime.Object) {
			o["roots"].(*corev1.ConfigMap).Data[trustRootsKey] = string(pki.CertPEM(soon.Cert))
			o["issuer"] = issuerSecret(t, soonIssuer)
		}, 0, true, []string{"‼ the trust anchors are valid", "expires in 9 days", "‼ the issuer is valid", "(with 2 warnings)"}},
		{"expired anchors fail", nil, func(o map[string]runtime.Object) {
			o["roots"].(*corev1.ConfigMap).Data[trustRootsKey] = string(pki.CertPEM(soon.Cert))
			o["issuer"] = issuerSecret(t, soonIssuer)
		}, 20 * 24 * time.Hour, false, []string{"× the trust anchors are valid", "expired at"}},
		// Pods or Services outside the cluster networks: reached without
		// mTLS. A warning naming each, with the networks in use.
		{"pod CIDR outside the cluster networks", nil, func(o map[string]runtime.Object) {
			o["node"].(*corev1.Node).Spec.PodCIDRs = []string{"100.200.0.0/24"}
		}, 0, true, []string{"‼ the cluster networks hold every pod and Service address",
			"the pod CIDR of node node1 100.200.0.0/24 outside the cluster networks 10.0.0.0/8,100.64.0.0/10,172.16.0.0/12,192.168.0.0/16,fc00::/7", "mesh upgrade --cluster-networks"}},
		{"cluster networks that hold them", nil, func(o map[string]runtime.Object) {
			o["node"].(*corev1.Node).Spec.PodCIDRs = []string{"100.200.0.0/24"}
			o["config"].(*corev1.ConfigMap).Data["values"] = "proxy:\n  clusterNetworks: 100.200.0.0/16,10.0.0.0/8,fd00::/8\n"
		}, 0, true, []string{"Status check results are √\n"}}, // no warning
		// A part of a Service CIDR is not enough; without ServiceCIDR
		// objects, the API server's Service address stands for them.
		{"service CIDR partly outside", nil, func(o map[string]runtime.Object) {
			o["service-cidr"].(*networkingv1.ServiceCIDR).Spec.CIDRs = []string{"10.96.0.0/16", "2001:db8:96::/112"}
		}, 0, true, []string{"‼ the cluster networks hold", "the Service CIDR kubernetes 2001:db8:96::/112 outside"}},
		{"no ServiceCIDR, API server's Service outside", nil, func(o map[string]runtime.Object) {
			delete(o, "service-cidr")
			o["kubernetes"] = &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
				Spec: corev1.ServiceSpec{ClusterIPs: []string{"198.51.100.1"}}}
		}, 0, true, []string{"the cluster IP of Service default/kubernetes 198.51.100.1/32 outside"}},
		// A CNI that leaves the nodes' pod CIDRs empty: the pods'
		// addresses tell (host-network pods aside).
		{"no pod CIDRs, pod addresses outside", nil, func(o map[string]runtime.Object) {
			o["node"].(*corev1.Node).Spec.PodCIDRs = nil
			for i, ip := range []string{"100.200.0.7", "100.200.0.8", "100.200.0.9", "100.200.1.1", "10.1.0.1"} {
				p := meshedPod(fmt.Sprintf("vpc-%d", i), "shop", "v1.2.3", true)
				p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
				o[p.Name] = p
			}
			host := meshedPod("node-agent", "kube-system", "v1.2.3", true)
			host.Spec.HostNetwork, host.Status.PodIPs = true, []corev1.PodIP{{IP: "198.51.100.4"}}
			o[host.Name] = host
		}, 0, true, []string{"‼ the cluster networks hold", "the address of pod shop/vpc-0 100.200.0.7, the address of pod shop/vpc-1 100.200.0.8, the address of pod shop/vpc-2 100.200.0.9, 1 more pod addresses outside"}},
		{"issuer from other anchors", nil, func(o map[string]runtime.Object) {
			o["issuer"] = issuerSecret(t, otherIssuer)
		}, 0, false, []string{"× the issuer is valid", "does not chain to the trust anchors"}},
		{"issuer restricted to codeSigning", nil, func(o map[string]runtime.Object) {
			o["roots"].(*corev1.ConfigMap).Data[trustRootsKey] = string(pki.CertPEM(other.Cert))
			o["issuer"] = issuerSecret(t, csIssuer)
		}, 0, false, []string{"× the issuer is valid",
			`certificate "code-signing issuer": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`}},
		{"anchor restricted to codeSigning", nil, func(o map[string]runtime.Object) {
			o["roots"].(*corev1.ConfigMap).Data[trustRootsKey] = string(pki.CertPEM(csRoot.Cert))
			o["issuer"] = issuerSecret(t, csRootIssuer)
		}, 0, false, []string{"× the trust anchors are valid",
			`trust anchor: pki: certificate "code-signing root": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`}},
		{"version skew warns", nil, func(o map[string]runtime.Object) {
			for _, c := range controlPlaneComponents {
				o["deploy-"+c].(*appsv1.Deployment).Labels[versionLabel] = "v1.1.0"
			}
		}, 0, true, []string{"‼ the control plane runs this CLI's version", "control plane v1.1.0, CLI v1.2.3"}},
		{"proxy not ready", []string{"--proxy"}, func(o map[string]runtime.Object) {
			o["meshed"] = meshedPod("web-1", "shop", "v1.2.3", false)
		}, 0, false, []string{"× data-plane proxies are ready", "shop/web-1"}},
		{"old proxy warns", []string{"--proxy"}, func(o map[string]runtime.Object) {
			o["meshed"] = meshedPod("web-1", "shop", "v1.0.0", true)
		}, 0, true, []string{"‼ data-plane proxies run the control plane's proxy version", "shop/web-1 (v1.0.0)"}},
		{"no meshed pods in namespace", []string{"--proxy", "-n", "empty"}, func(map[string]runtime.Object) {}, 0, true, []string{"no meshed pods in namespace empty"}},
		{"clock skew warns", nil, func(o map[string]runtime.Object) {
			o["lease"].(*coordv1.Lease).Spec.RenewTime = &metav1.MicroTime{Time: time.Now().Add(time.Hour)}
		}, 0, true, []string{"‼ the local clock is in sync", "node node1"}},
		{"no namespace is fatal", nil, func(o map[string]runtime.Object) {
			delete(o, "namespace")
		}, 0, false, []string{"× the control plane namespace exists", "mesh install | kubectl apply -f -"}},
		{"no CRDs", nil, nil, 0, false, []string{"× the ServiceProfile CRD", "mesh install --crds"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			objs := healthyCluster(t)
			var k *Kube
			if tc.mutate == nil {
				k, _ = fakeKube(false)
				k.Client.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &kversion.Info{Major: "1", Minor: "32"}
			} else {
				tc.mutate(objs)
				k = kubeOf(objs)
			}
			old := checkNow
			checkNow = func() time.Time { return time.Now().Add(tc.now) }
			t.Cleanup(func() { checkNow = old })
			serveProxyCertificateOf(t, "shop/web-1", http.StatusOK, proxyChain(t))
			out, _, err := runWith(t, k, append([]string{"check", "--wait", "0s", "-o", "short"}, tc.args...)...)
			if (err == nil) != tc.success {
				t.Errorf("err = %v, want success=%v", err, tc.success)
			}
			if err != nil {
				if ee, ok := err.(exitError); !ok || ee.code != 1 {
					t.Errorf("err = %#v, want exit status 1", err)
				}
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestCheckPre(t *testing.T) {
	cases := []struct {
		name    string
		allowed bool
		objs    []runtime.Object
		success bool
		want    string
	}{
		{"ready to install", true, nil, true, "Status check results are √"},
		{"already installed", true, []runtime.Object{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "conduit"}}}, false, "namespace conduit exists"},
		{"not allowed", false, nil, false, "you may not create customresourcedefinitions.apiextensions.k8s.io"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, cs := fakeKube(false, tc.objs...)
			cs.Discovery().(*fakediscovery.FakeDiscovery).FakedServerVersion = &kversion.Info{Major: "1", Minor: "32"}
			cs.PrependReactor("create", "selfsubjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
				r := a.(k8stesting.CreateAction).GetObject().(*authv1.SelfSubjectAccessReview)
				r.Status.Allowed = tc.allowed
				return true, r, nil
			})
			out, _, err := runWith(t, k, "check", "--pre", "--wait", "0s")
			if (err == nil) != tc.success || !strings.Contains(out, tc.want) {
				t.Fatalf("err = %v, output:\n%s\nwant %q", err, out, tc.want)
			}
		})
	}
}

func TestCheckBadOutput(t *testing.T) {
	_, _, err := runWith(t, nil, "check", "-o", "yaml")
	if err == nil || !strings.Contains(err.Error(), "accepted: table, short, json") {
		t.Fatalf("err = %v", err)
	}
}

func TestImageTag(t *testing.T) {
	for in, want := range map[string]string{
		"ghcr.io/conduit-mesh/controller:v1": "v1", "localhost:5000/controller": "", "controller:dev@sha256:abc": "dev",
	} {
		if got := imageTag(in); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckProxyCertificates: `mesh check --proxy` reads the certificate of
// every ready proxy and fails naming those that expired (a proxy stays
// ready then) or do not chain to the trust anchors.
func TestCheckProxyCertificates(t *testing.T) {
	withVersion(t, "v1.2.3")
	other := newFixedChain(t, "other", time.Now().Add(time.Hour))
	cases := []struct {
		name    string
		chain   func(t *testing.T) string
		status  int
		now     time.Duration
		success bool
		want    []string
	}{
		{"valid", proxyChain, http.StatusOK, 0, true, []string{"Status check results are √"}},
		{"expired", proxyChain, http.StatusOK, 2 * time.Hour, false, []string{
			"× data-plane proxies hold valid certificates that chain to the trust anchors",
			"1 of 1 proxies: shop/web-1: certificate expired at ", "(expired 1h0m0s ago)", "mesh identity -n <ns> <pod>"}},
		{"other anchors", func(*testing.T) string { return other.pem() }, http.StatusOK, 0, false, []string{
			"× data-plane proxies hold valid certificates", "shop/web-1: certificate not trusted: x509: certificate signed by unknown authority"}},
		{"renewal overdue warns", proxyChain, http.StatusOK, 50 * time.Minute, true, []string{
			"‼ data-plane proxies hold valid certificates", "1 of 1 proxies overdue for renewal",
			"shop/web-1: 83 % of its certificate's life spent, not renewed (expires at "}},
		{"admin port answers 503", proxyChain, http.StatusServiceUnavailable, 0, false, []string{
			"× data-plane proxies hold valid certificates", "the proxy of shop/web-1 has no certificate yet"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			serveProxyCertificateOf(t, "shop/web-1", tc.status, tc.chain(t))
			old := checkNow
			checkNow = func() time.Time { return time.Now().Add(tc.now) }
			t.Cleanup(func() { checkNow = old })
			out, _, err := runWith(t, kubeOf(healthyCluster(t)), "check", "--proxy", "--wait", "0s", "-o", "short")
			if (err == nil) != tc.success {
				t.Errorf("err = %v, want success=%v", err, tc.success)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestCheckProxyDiscovery: `mesh check --proxy` warns of each proxy that
// reports the destination service unreachable.
func TestCheckProxyDiscovery(t *testing.T) {
	withVersion(t, "v1.2.3")
	const stale = "discovery_unreachable 1\ndiscovery_stale{kind=\"endpoints\"} 2\ndiscovery_stale{kind=\"profile\"} 3\n"
	cases := []struct {
		name    string
		metrics string
		want    []string
	}{
		{"reachable", "# TYPE discovery_unreachable gauge\ndiscovery_unreachable 0\ndiscovery_stale{kind=\"endpoints\"} 0\n",
			[]string{"√ data-plane proxies reach the destination service", "Status check results are √"}},
		{"unreachable", stale, []string{"‼ data-plane proxies reach the destination service",
			"1 of 1 proxies: shop/web-1: destination service unreachable, 5 targets served from what it said before",
			"NetworkPolicies between the pod and the control plane's namespace"}},
		{"an older proxy without the metric", "request_total 1\n", []string{"√ data-plane proxies reach the destination service"}},
		{"metrics unreadable", "", []string{"‼ data-plane proxies reach the destination service",
			"shop/web-1: metrics unreadable: GET /metrics on shop/web-1:4191: 404 Not Found"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			serveProxyAdminOf(t, "shop/web-1", http.StatusOK, proxyChain(t), tc.metrics)
			out, _, err := runWith(t, kubeOf(healthyCluster(t)), "check", "--proxy", "--wait", "0s")
			if err != nil {
				t.Errorf("err = %v: a warning does not fail the check", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}
