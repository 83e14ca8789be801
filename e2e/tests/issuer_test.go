//go:build e2e

package tests

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/conduit-mesh/conduit/e2e/framework"
	"github.com/conduit-mesh/conduit/pkg/pki"
)

const (
	issuerSecret  = "conduit-identity-issuer"
	anchorsConfig = "conduit-identity-trust-roots"
)

// restrictedIssuer returns a CA certificate signed by anchor whose
// extended key usages list serverAuth only: valid as a CA, but every
// workload certificate under it fails a peer's clientAuth check.
func restrictedIssuer(t *testing.T, anchor *pki.CA, commonName string) *pki.CA {
	t.Helper()
	key, err := pki.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	sn, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          sn,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, anchor.Cert, key.Public(), anchor.Key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}

// waitIssuerEvent waits for an Event of the identity service on the issuer
// Secret with reason, recorded (or repeated) at since or later, whose
// message contains every string of want, and returns that message. It
// fails the test, but returns, when none comes within 2 minutes.
func waitIssuerEvent(t *testing.T, f *framework.Framework, reason string, since time.Time, want ...string) string {
	t.Helper()
	var msg string
	since = since.Truncate(time.Second)
	err := framework.Poll(context.Background(), 2*time.Minute, func(ctx context.Context) (bool, error) {
		evs, err := f.Client.CoreV1().Events(framework.ControlPlaneNamespace).List(ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.kind=Secret,involvedObject.name=" + issuerSecret + ",reason=" + reason})
		if err != nil {
			return false, err
		}
		var seen []string
		for _, e := range evs.Items {
			at := e.LastTimestamp.Time
			if at.IsZero() {
				at = e.EventTime.Time
			}
			if at.Before(since) {
				continue
			}
			if containsAll(e.Message, want) {
				msg = e.Message
				return true, nil
			}
			seen = append(seen, e.Message)
		}
		return false, fmt.Errorf("recent %s events: %q", reason, seen)
	})
	if err != nil {
		t.Errorf("no %s event on Secret %s saying %q: %v", reason, issuerSecret, want, err)
	}
	return msg
}

// TestRestrictedIssuerRefused: the running identity service refuses an
// issuer whose extended key usages leave out clientAuth (a CA restricted
// to serverAuth, valid and chaining to a trust anchor of the bundle): it
// records a Warning IssuerInvalid event on the issuer Secret naming the
// certificate and what it lacks, keeps the last good issuer, and a meshed
// pod started meanwhile gets a certificate from that issuer with which
// mTLS works. The Secret and the bundle are restored afterwards. (The
// installed anchor's key is not kept, so the restricted issuer is signed
// by a second anchor, added to the bundle for the test.) Without
// pki.CheckExtKeyUsage in the identity service (checked on the cluster
// with it disabled) the restricted issuer is loaded, no IssuerInvalid
// event comes, and the new pods never start: their proxies refuse each
// certificate it signs ("issued certificate does not verify: x509:
// certificate specifies an incompatible key usage") and stay unready.
func TestRestrictedIssuerRefused(t *testing.T) {
	f := framework.New(t)
	f.InstallMesh(t)
	f.CollectOnFailure(t, framework.ControlPlaneNamespace)
	f.FollowLogs(t, framework.ControlPlaneNamespace)
	ctx := framework.Context(t, 10*time.Minute)
	secrets := f.Client.CoreV1().Secrets(framework.ControlPlaneNamespace)
	configMaps := f.Client.CoreV1().ConfigMaps(framework.ControlPlaneNamespace)
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=identity", 1, 2*time.Minute)

	orig, err := secrets.Get(ctx, issuerSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	origCM, err := configMaps.Get(ctx, anchorsConfig, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	issuerChain, err := pki.ParseCertificates(orig.Data["tls.crt"])
	if err != nil || len(issuerChain) == 0 {
		t.Fatalf("Secret %s: tls.crt: %v", issuerSecret, err)
	}
	goodIssuer := issuerChain[0]
	anchors := trustBundle(t, f, ctx)

	suffix := strings.ToLower(strings.TrimPrefix(t.Name(), "Test")) + "." + time.Now().UTC().Format("150405")
	extra, err := pki.NewRoot("e2e-anchor."+suffix, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	restricted := restrictedIssuer(t, extra, "e2e-serverauth-only."+suffix)
	restrictedKey, err := pki.KeyPEM(restricted.Key)
	if err != nil {
		t.Fatal(err)
	}

	// restore puts back the Secret and then the bundle (in this order,
	// the issuer is valid at every step) and waits for the identity
	// service to be back on the bundle it had. It runs once, at the end
	// of the test or on its failure.
	var restoreOnce sync.Once
	restore := func(t *testing.T) {
		restoreOnce.Do(func() {
			ctx := context.Background()
			at := time.Now()
			s, err := secrets.Get(ctx, issuerSecret, metav1.GetOptions{})
			if err == nil {
				s.Data = orig.Data
				_, err = secrets.Update(ctx, s, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Errorf("restoring Secret %s: %v", issuerSecret, err)
			}
			cm, err := configMaps.Get(ctx, anchorsConfig, metav1.GetOptions{})
			if err == nil {
				cm.Data, cm.BinaryData = origCM.Data, origCM.BinaryData
				_, err = configMaps.Update(ctx, cm, metav1.UpdateOptions{})
			}
			if err != nil {
				t.Errorf("restoring ConfigMap %s: %v", anchorsConfig, err)
				return
			}
			waitIssuerEvent(t, f, "IssuerUpdated", at, fmt.Sprintf("%q", goodIssuer.Subject.CommonName), fmt.Sprintf("chaining to %d trust anchor(s)", len(anchors)))
		})
	}
	t.Cleanup(func() { restore(t) })

	// The second anchor joins the bundle: the identity service reloads,
	// keeping its issuer, now chaining to one more anchor.
	at := time.Now()
	cm := origCM.DeepCopy()
	cm.Data["ca-bundle.crt"] = strings.TrimRight(cm.Data["ca-bundle.crt"], "\n") + "\n" + string(pki.CertPEM(extra.Cert))
	if _, err := configMaps.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitIssuerEvent(t, f, "IssuerUpdated", at, fmt.Sprintf("%q", goodIssuer.Subject.CommonName), fmt.Sprintf("chaining to %d trust anchor(s)", len(anchors)+1))

	// The restricted issuer replaces the good one in the Secret.
	at = time.Now()
	s := orig.DeepCopy()
	s.Data = map[string][]byte{"tls.crt": pki.CertPEM(restricted.Cert), "tls.key": restrictedKey, "ca.crt": pki.CertPEM(extra.Cert)}
	if _, err := secrets.Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// (A missing event fails the test, which goes on to show what the
	// identity service did instead.)
	if msg := waitIssuerEvent(t, f, "IssuerInvalid", at, fmt.Sprintf("%q", restricted.Cert.Subject.CommonName)); msg != "" {
		for _, want := range []string{"serverAuth", "without clientAuth", "keeping the last good issuer " + fmt.Sprintf("%q", goodIssuer.Subject.CommonName)} {
			if !strings.Contains(msg, want) {
				t.Errorf("IssuerInvalid event %q does not say %q", msg, want)
			}
		}
		t.Logf("IssuerInvalid: %s", msg)
	}

	// A meshed pod started now gets its certificate from the good issuer,
	// and mTLS between two such pods works.
	ns := meshedNamespace(t, f, "issuer")
	image := f.Image("testapp")
	f.WaitPodsReady(t, framework.ControlPlaneNamespace, "conduit.dev/control-plane-component=injector", 1, 2*time.Minute)
	f.Apply(t, ns, manifests(echoDeployment("server", image, nil), httpService("server"), sleeperPod("client", image)))
	server := f.WaitPodsReady(t, ns, "app=server", 1, 3*time.Minute)[0]
	client := f.WaitPodsReady(t, ns, "app=client", 1, 3*time.Minute)[0]
	if !injected(&server) || !injected(&client) {
		t.Fatal("the server or the client has no proxy")
	}
	roots := x509.NewCertPool()
	for _, a := range anchors {
		roots.AddCert(a)
	}
	for _, pod := range []string{server.Name, client.Name} {
		chain := proxyCertificate(t, f, ctx, ns, pod)
		if chain[0].CheckSignatureFrom(goodIssuer) != nil || chain[0].Issuer.CommonName != goodIssuer.Subject.CommonName {
			t.Errorf("%s: certificate issued by %q, want the last good issuer %q", pod, chain[0].Issuer.CommonName, goodIssuer.Subject.CommonName)
			continue
		}
		inter := x509.NewCertPool()
		for _, c := range chain[1:] {
			inter.AddCert(c)
		}
		opts := x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
		if _, err := chain[0].Verify(opts); err != nil {
			t.Errorf("%s: certificate %v does not verify under the installed anchors: %v", pod, chain[0].DNSNames, err)
		}
	}
	clientID := "default." + ns + ".serviceaccount.identity." + framework.ControlPlaneNamespace + ".cluster.local"
	out := f.Exec(t, ns, "client", "client", "testapp", "get", "-n", "3", "-timeout", "5s", "http://server:8080/")
	es := decodeEchoes(t, out)
	if len(es) != 3 {
		t.Fatalf("%d answers, want 3:\n%s", len(es), out)
	}
	for _, e := range es {
		if got := e.Headers["Conduit-Client-Id"]; len(got) != 1 || got[0] != clientID {
			t.Errorf("%s saw conduit-client-id %q, want %s (mTLS between the proxies)", e.Pod, got, clientID)
		}
	}

	restore(t)
}
