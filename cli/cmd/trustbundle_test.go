package cmd

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/conduit-mesh/conduit/pkg/pki"
)

// TestReadTrustBundle: the one reader of the trust anchors that check,
// identity and rotate-anchors share says which ConfigMap, in which
// namespace, and which key failed.
func TestReadTrustBundle(t *testing.T) {
	root, err := pki.NewRoot("root.test", 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	bundle := func(data string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: trustRootsName, Namespace: "conduit"}, Data: map[string]string{trustRootsKey: data}}
	}
	for _, tc := range []struct {
		name    string
		objects []*corev1.ConfigMap
		wantCM  bool
		wantErr string // "": the root is read
	}{
		{"the bundle", []*corev1.ConfigMap{bundle(string(pki.CertPEM(root.Cert)))}, true, ""},
		{"no ConfigMap", nil, false, `read ConfigMap conduit/conduit-identity-trust-roots: configmaps "conduit-identity-trust-roots" not found`},
		{"not PEM", []*corev1.ConfigMap{bundle("junk")}, true, "ConfigMap conduit/conduit-identity-trust-roots key ca-bundle.crt: "},
		{"empty", []*corev1.ConfigMap{bundle("")}, true, "ConfigMap conduit/conduit-identity-trust-roots key ca-bundle.crt: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := fake.NewClientset()
			for _, o := range tc.objects {
				if _, err := c.CoreV1().ConfigMaps(o.Namespace).Create(context.Background(), o, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			cm, certs, err := readTrustBundle(context.Background(), c, "conduit")
			if (cm != nil) != tc.wantCM {
				t.Errorf("ConfigMap %v, want one: %v", cm, tc.wantCM)
			}
			switch {
			case tc.wantErr == "" && (err != nil || len(certs) != 1 || !certs[0].Equal(root.Cert)):
				t.Errorf("readTrustBundle = %d certificates, %v; want the root", len(certs), err)
			case tc.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.wantErr) || certs != nil):
				t.Errorf("readTrustBundle = %d certificates, %v; want an error starting %q", len(certs), err, tc.wantErr)
			}
		})
	}
}
