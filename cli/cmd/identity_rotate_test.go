package cmd

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// rotationCluster is a fake cluster with a control plane on anchor A, one
// meshed Deployment and, optionally, a meshed pod no workload owns. It plays
// the parts of the identity service (an IssuerUpdated event when the issuer
// Secret changes) and of the workload controllers (a restart replaces the pods).
type rotationCluster struct {
	t     *testing.T
	cs    *fake.Clientset
	k     *Kube
	clock time.Time
	a, b  *pki.CA
	bIss  *pki.CA
	gen   int
}

func newRotationCluster(t *testing.T, barePod bool) *rotationCluster {
	t.Helper()
	a, err := pki.NewRoot("root.a", 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	aIss, _ := a.NewIssuer("identity.a", 90*24*time.Hour)
	b, _ := pki.NewRoot("root.b", 365*24*time.Hour)
	bIss, _ := b.NewIssuer("identity.b", 90*24*time.Hour)
	c := &rotationCluster{t: t, clock: time.Now().Truncate(time.Second), a: a, b: b, bIss: bIss}
	key, _ := pki.KeyPEM(aIss.Key)
	objs := []runtime.Object{
		rootsConfigMap(a.Cert),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: issuerSecretName, Namespace: "conduit"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{"tls.crt": pki.CertPEM(aIss.Cert), "tls.key": key, "ca.crt": pki.CertPEM(a.Cert)}},
	}
	for _, w := range []struct{ ns, name string }{{"conduit", "conduit-identity"}, {"emojivoto", "web"}} {
		objs = append(objs,
			&appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: w.name, Namespace: w.ns}},
			&appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: w.name + "-rs", Namespace: w.ns, OwnerReferences: []metav1.OwnerReference{ctrlRef("Deployment", w.name)}}},
			c.pod(w.ns, w.name+"-0", "ReplicaSet", w.name+"-rs", pki.CertPEM(a.Cert), c.clock.Add(-time.Hour)),
		)
	}
	if barePod {
		objs = append(objs, c.pod("emojivoto", "debug", "", "", pki.CertPEM(a.Cert), c.clock.Add(-time.Hour)))
	}
	c.cs = fake.NewClientset(objs...)
	c.k = &Kube{Client: c.cs, Namespace: "default"}
	c.cs.PrependReactor("update", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		c.tick()
		return false, nil, nil
	})
	// The identity service loads a valid issuer and says so on the Secret.
	c.cs.PrependReactor("update", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		s := a.(k8stesting.UpdateAction).GetObject().(*corev1.Secret)
		certs, err := pki.ParseCertificates(s.Data["tls.crt"])
		if err != nil {
			t.Errorf("the Secret update holds no certificate: %v", err)
			return false, nil, nil
		}
		c.tick()
		ev := &corev1.Event{
			ObjectMeta:     metav1.ObjectMeta{Name: "issuer." + c.clock.Format("150405"), Namespace: "conduit"},
			InvolvedObject: corev1.ObjectReference{Kind: "Secret", Namespace: "conduit", Name: issuerSecretName},
			Reason:         issuerUpdatedReason, Type: corev1.EventTypeNormal,
			Message:       `loaded issuer "identity.b" (sha256 ` + fingerprint(certs[0])[:16] + `, expires ...) chaining to 2 trust anchor(s)`,
			LastTimestamp: metav1.Time{Time: c.clock},
		}
		if err := c.cs.Tracker().Add(ev); err != nil {
			t.Error(err)
		}
		return false, nil, nil
	})
	return c
}

func ctrlRef(kind, name string) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{Kind: kind, Name: name, Controller: &yes}
}

func (c *rotationCluster) tick() { c.clock = c.clock.Add(time.Minute) }

// pod is a meshed pod; the control plane's take the bundle from the ConfigMap.
func (c *rotationCluster) pod(ns, name, ownerKind, owner string, bundle []byte, created time.Time) *corev1.Pod {
	env := corev1.EnvVar{Name: trustAnchorsEnv, Value: string(bundle)}
	if ns == "conduit" {
		env = corev1.EnvVar{Name: trustAnchorsEnv, ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: trustRootsName}, Key: trustRootsKey}}}
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{controlPlaneNSLabel: "conduit"}, CreationTimestamp: metav1.Time{Time: created}},
		Spec:       corev1.PodSpec{InitContainers: []corev1.Container{{Name: proxyContainerName, Env: []corev1.EnvVar{env}}}, Containers: []corev1.Container{{Name: "app"}}},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if owner != "" {
		p.OwnerReferences = []metav1.OwnerReference{ctrlRef(ownerKind, owner)}
	}
	return p
}

// rollout replaces the pods of each restarted Deployment, injected with the current bundle.
func (c *rotationCluster) rollout(ctx context.Context, ws []workloadRef) error {
	cm, err := c.cs.CoreV1().ConfigMaps("conduit").Get(ctx, trustRootsName, metav1.GetOptions{})
	if err != nil {
		return err
	}
	for _, w := range ws {
		d, err := c.cs.AppsV1().Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if d.Spec.Template.Annotations[restartedAtAnnotation] == "" {
			c.t.Errorf("%s was not restarted", w)
		}
		pods, _ := c.cs.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{})
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Name, w.Name+"-") {
				_ = c.cs.CoreV1().Pods(w.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{})
			}
		}
		c.tick()
		c.gen++
		np := c.pod(w.Namespace, w.Name+"-"+string(rune('a'+c.gen)), "ReplicaSet", w.Name+"-rs", []byte(cm.Data[trustRootsKey]), c.clock)
		if _, err := c.cs.CoreV1().Pods(w.Namespace).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

func (c *rotationCluster) rotation(t *testing.T, out *bytes.Buffer, issuer bool) *rotation {
	t.Helper()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f := rotateFlags{anchorFile: write("b.crt", pki.CertPEM(c.b.Cert)), fromStep: 1, toStep: rotateSteps, restart: true, timeout: time.Second}
	if !issuer {
		f.fromStep = 4
	}
	if issuer {
		key, _ := pki.KeyPEM(c.bIss.Key)
		f.issuerCertFile, f.issuerKeyFile = write("i.crt", pki.CertPEM(c.bIss.Cert)), write("i.key", key)
	}
	r, err := newRotation(f, c.k, "conduit", out)
	if err != nil {
		t.Fatal(err)
	}
	r.now = func() time.Time { return c.clock }
	r.poll = time.Millisecond
	r.waitRollouts = c.rollout
	r.sleep = func(context.Context, time.Duration) error { c.tick(); return nil }
	return r
}

func (c *rotationCluster) bundle(t *testing.T) []string {
	cm, err := c.cs.CoreV1().ConfigMaps("conduit").Get(context.Background(), trustRootsName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	certs, err := pki.ParseCertificates([]byte(cm.Data[trustRootsKey]))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

func TestRotateAnchors(t *testing.T) {
	c := newRotationCluster(t, false)
	var out bytes.Buffer
	r := c.rotation(t, &out, true)
	ctx := context.Background()
	// The data plane restarts only once the control plane's old pods have exited.
	waits := 0
	r.waitTerminated = func(ctx context.Context, ws []workloadRef) error {
		waits++
		if len(ws) != 1 || ws[0] != (workloadRef{"Deployment", "conduit", "conduit-identity"}) {
			t.Errorf("waited for the old pods of %v, want the control plane's only", ws)
		}
		if strings.Contains(out.String()[strings.LastIndex(out.String(), "Step "):], "restarted deployment/web") {
			t.Error("the data plane restarted before the control plane's old pods exited")
		}
		return nil
	}
	if err := r.run(ctx, 1, rotateSteps); err != nil {
		t.Fatalf("%v\noutput:\n%s", err, out.String())
	}
	if waits != 3 {
		t.Errorf("waited for the control plane's old pods %d times, want 3 (steps 2, 4 and 6)", waits)
	}
	if got := c.bundle(t); len(got) != 1 || got[0] != "root.b" {
		t.Errorf("final bundle %v, want [root.b]", got)
	}
	s, _ := c.cs.CoreV1().Secrets("conduit").Get(ctx, issuerSecretName, metav1.GetOptions{})
	if cur, _ := pki.ParseCertificates(s.Data["tls.crt"]); !cur[0].Equal(c.bIss.Cert) {
		t.Error("the Secret does not hold B's issuer")
	}
	text := out.String()
	for _, want := range []string{
		"Step 1/6: add the new anchor", `updated ConfigMap conduit/conduit-identity-trust-roots: "root.a"`,
		"Step 2/6", "2 of 2 meshed pods: proxy does not trust the new anchor", "restarted deployment/conduit-identity in conduit",
		"Step 3/6", `updated Secret conduit/conduit-identity-issuer: issuer "identity.b"`, "signs with the new issuer since",
		"Step 4/6", "2 of 2 meshed pods: proxy holds a certificate from the old issuer",
		"Step 5/6", `removed "root.a"`,
		"Step 6/6", "2 of 2 meshed pods: proxy still trusts an old anchor",
		`Done: the mesh trusts only "root.b"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// The control plane restarts before the data plane.
	if i, j := strings.Index(text, "restarted deployment/conduit-identity"), strings.Index(text, "restarted deployment/web"); i < 0 || j < i {
		t.Errorf("the control plane did not restart first:\n%s", text)
	}

	// Running it again changes nothing and restarts nothing.
	out.Reset()
	if err := r.run(ctx, 1, rotateSteps); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out.String(), "restarted") || strings.Contains(out.String(), "updated") {
		t.Errorf("a second run changed the cluster:\n%s", out.String())
	}
}

// TestRotateAnchorsPodsLeftUnmeshed: a restarted workload whose new pod
// has no proxy (the injector was down, its webhook ignored the failure)
// stops the rotation, naming the pod, instead of reporting success.
func TestRotateAnchorsPodsLeftUnmeshed(t *testing.T) {
	c := newRotationCluster(t, false)
	var out bytes.Buffer
	r := c.rotation(t, &out, true)
	ctx := context.Background()
	r.waitRollouts = func(ctx context.Context, ws []workloadRef) error {
		if err := c.rollout(ctx, ws); err != nil {
			return err
		}
		for _, w := range ws {
			if w.Name != "web" {
				continue
			}
			c.gen++
			p := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: "web-plain", Namespace: w.Namespace, OwnerReferences: []metav1.OwnerReference{ctrlRef("ReplicaSet", "web-rs")}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app"}}},
				Status:     corev1.PodStatus{Phase: corev1.PodRunning},
			}
			if _, err := c.cs.CoreV1().Pods(w.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
				return err
			}
		}
		return nil
	}
	err := r.run(ctx, 1, rotateSteps)
	if err == nil || !strings.Contains(err.Error(), "emojivoto/web-plain") || !strings.Contains(err.Error(), "without a proxy") {
		t.Fatalf("err %v; want the unmeshed pod named\noutput:\n%s", err, out.String())
	}
	if strings.Contains(out.String(), "Step 3/6") {
		t.Errorf("the rotation went on past step 2:\n%s", out.String())
	}
}

func TestRotateAnchorsRefusals(t *testing.T) {
	ctx := context.Background()
	t.Run("unowned pod stops step 2", func(t *testing.T) {
		c := newRotationCluster(t, true)
		var out bytes.Buffer
		err := c.rotation(t, &out, true).run(ctx, 1, rotateSteps)
		if err == nil || !strings.Contains(err.Error(), "step 2") || !strings.Contains(err.Error(), "emojivoto/debug") || !strings.Contains(err.Error(), "--from-step 2") {
			t.Fatalf("err = %v, want step 2 to name the unowned pod and how to resume", err)
		}
		s, _ := c.cs.CoreV1().Secrets("conduit").Get(ctx, issuerSecretName, metav1.GetOptions{})
		if cur, _ := pki.ParseCertificates(s.Data["tls.crt"]); cur[0].Equal(c.bIss.Cert) {
			t.Error("the issuer was switched although a proxy does not trust B")
		}
	})
	t.Run("step 3 before step 2", func(t *testing.T) {
		c := newRotationCluster(t, false)
		r := c.rotation(t, &bytes.Buffer{}, true)
		if err := r.run(ctx, 1, 1); err != nil {
			t.Fatal(err)
		}
		err := r.run(ctx, 3, 3)
		if err == nil || !strings.Contains(err.Error(), "2 meshed pods do not trust the new anchor yet") || !strings.Contains(err.Error(), "emojivoto/web-0") {
			t.Fatalf("err = %v, want step 3 to refuse while proxies lack B", err)
		}
	})
	t.Run("step 5 before step 4", func(t *testing.T) {
		c := newRotationCluster(t, false)
		r := c.rotation(t, &bytes.Buffer{}, true)
		if err := r.run(ctx, 1, 3); err != nil {
			t.Fatal(err)
		}
		err := r.run(ctx, 5, 5)
		if err == nil || !strings.Contains(err.Error(), "may still hold a certificate from the old issuer") {
			t.Fatalf("err = %v, want step 5 to refuse before the leaves are renewed", err)
		}
		if got := c.bundle(t); len(got) != 2 {
			t.Errorf("bundle changed to %v", got)
		}
	})
	t.Run("step 3 before step 1", func(t *testing.T) {
		c := newRotationCluster(t, false)
		err := c.rotation(t, &bytes.Buffer{}, true).run(ctx, 3, 3)
		if err == nil || !strings.Contains(err.Error(), "not in the bundle") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("step 5 before step 3", func(t *testing.T) {
		c := newRotationCluster(t, false)
		err := c.rotation(t, &bytes.Buffer{}, false).run(ctx, 5, 5)
		if err == nil || !strings.Contains(err.Error(), "not signed by the new anchor") {
			t.Fatalf("err = %v", err)
		}
		if got := c.bundle(t); len(got) != 1 || got[0] != "root.a" {
			t.Errorf("bundle changed to %v", got)
		}
	})
	t.Run("restart=false lists the commands", func(t *testing.T) {
		c := newRotationCluster(t, false)
		var out bytes.Buffer
		r := c.rotation(t, &out, true)
		r.restart = false
		err := r.run(ctx, 1, 2)
		if err == nil || !strings.Contains(out.String(), "kubectl -n emojivoto rollout restart deployment/web") {
			t.Fatalf("err = %v, output:\n%s", err, out.String())
		}
	})
	t.Run("cert-manager Secret", func(t *testing.T) {
		c := newRotationCluster(t, false)
		s, _ := c.cs.CoreV1().Secrets("conduit").Get(ctx, issuerSecretName, metav1.GetOptions{})
		s.Annotations = map[string]string{certManagerCertAnno: "conduit-identity-issuer"}
		if _, err := c.cs.CoreV1().Secrets("conduit").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		err := c.rotation(t, &bytes.Buffer{}, true).run(ctx, 1, 3)
		if err == nil || !strings.Contains(err.Error(), "cert-manager manages") {
			t.Fatalf("err = %v", err)
		}
	})
}

func TestRotateAnchorsInputs(t *testing.T) {
	a, _ := pki.NewRoot("root.a", time.Hour)
	b, _ := pki.NewRoot("root.b", time.Hour)
	bIss, _ := b.NewIssuer("identity.b", time.Hour)
	aIss, _ := a.NewIssuer("identity.a", time.Hour)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	bKey, _ := pki.KeyPEM(bIss.Key)
	aKey, _ := pki.KeyPEM(aIss.Key)
	bundle := append(pki.CertPEM(a.Cert), pki.CertPEM(b.Cert)...)
	csRoot := ekuCA(t, nil, "code-signing root", x509.ExtKeyUsageCodeSigning)
	srvIss := ekuCA(t, b, "server-only issuer", x509.ExtKeyUsageServerAuth)
	srvKey, _ := pki.KeyPEM(srvIss.Key)
	tests := []struct {
		name    string
		f       rotateFlags
		wantErr string
	}{
		{"nothing", rotateFlags{}, "--new-anchor-file"},
		{"no issuer", rotateFlags{anchorFile: write("b.crt", pki.CertPEM(b.Cert))}, "step 3 needs the new issuer"},
		{"issuer of another anchor", rotateFlags{anchorFile: write("b.crt", pki.CertPEM(b.Cert)), issuerCertFile: write("ia.crt", pki.CertPEM(aIss.Cert)), issuerKeyFile: write("ia.key", aKey)}, "must be signed by the new anchor"},
		{"key of another issuer", rotateFlags{anchorFile: write("b.crt", pki.CertPEM(b.Cert)), issuerCertFile: write("ib.crt", pki.CertPEM(bIss.Cert)), issuerKeyFile: write("ia.key", aKey)}, "key does not match"},
		{"two anchors", rotateFlags{anchorFile: write("ab.crt", bundle)}, "holds 2 certificates"},
		{"issuer as anchor", rotateFlags{anchorFile: write("ib.crt", pki.CertPEM(bIss.Cert))}, "not a self-signed CA"},
		{"anchor restricted to codeSigning", rotateFlags{anchorFile: write("cs.crt", pki.CertPEM(csRoot.Cert)), fromStep: 5, toStep: 6},
			`rotate-anchors: the new anchor: pki: certificate "code-signing root": extended key usages exclude mesh TLS: it lists only codeSigning, without serverAuth and clientAuth`},
		{"issuer restricted to serverAuth", rotateFlags{anchorFile: write("b.crt", pki.CertPEM(b.Cert)), issuerCertFile: write("srv.crt", pki.CertPEM(srvIss.Cert)), issuerKeyFile: write("srv.key", srvKey)},
			`certificate "server-only issuer": extended key usages exclude mesh TLS: it lists only serverAuth, without clientAuth`},
		{"resume at 5 needs no issuer", rotateFlags{anchorFile: write("b.crt", pki.CertPEM(b.Cert)), fromStep: 5, toStep: 6}, ""},
		{"bad steps", rotateFlags{anchorFile: write("b.crt", pki.CertPEM(b.Cert)), fromStep: 4, toStep: 2}, "must satisfy"},
		{"generate and files", rotateFlags{generateDir: filepath.Join(dir, "gen"), anchorFile: "x"}, "excludes"},
		{"all good", rotateFlags{anchorFile: write("b.crt", pki.CertPEM(b.Cert)), issuerCertFile: write("ib.crt", pki.CertPEM(bIss.Cert)), issuerKeyFile: write("ib.key", bKey)}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.f.fromStep == 0 {
				tt.f.fromStep, tt.f.toStep = 1, rotateSteps
			}
			_, err := newRotation(tt.f, nil, "conduit", &bytes.Buffer{})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
	t.Run("generate", func(t *testing.T) {
		gen := filepath.Join(dir, "gen")
		r, err := newRotation(rotateFlags{generateDir: gen, fromStep: 1, toStep: rotateSteps}, nil, "conduit", &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if r.issuer == nil || r.anchor == nil {
			t.Fatal("nothing generated")
		}
		for _, f := range []string{"anchor.crt", "anchor.key", "issuer.crt", "issuer.key"} {
			st, err := os.Stat(filepath.Join(gen, f))
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasSuffix(f, ".key") && st.Mode().Perm() != 0o600 {
				t.Errorf("%s has mode %v, want 0600", f, st.Mode().Perm())
			}
		}
		if _, err := newRotation(rotateFlags{generateDir: gen, fromStep: 1, toStep: rotateSteps}, nil, "conduit", &bytes.Buffer{}); err == nil {
			t.Error("generating into an existing directory was accepted")
		}
	})
}
