package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/core/injector"
	"github.com/conduit-mesh/conduit/pkg/pki"
	sdk "github.com/conduit-mesh/conduit/plugin-sdk"
	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
)

// tapLike is an injector hook shaped like viz's: it finds the proxy
// container in the pod it is sent and adds an environment variable to it;
// a pod without a proxy gets nothing. It only works if the host sends the
// pod as patched by the core.
func tapLike(req *sdk.PodPatchRequest) ([]sdk.PatchOp, error) {
	var pod corev1.Pod
	if err := json.Unmarshal(req.Pod, &pod); err != nil {
		return nil, err
	}
	for _, l := range []struct {
		field string
		cs    []corev1.Container
	}{{"initContainers", pod.Spec.InitContainers}, {"containers", pod.Spec.Containers}} {
		for i, c := range l.cs {
			if c.Name != injector.ProxyContainerName {
				continue
			}
			env := map[string]string{"name": "CONDUIT_PROXY_TAP_ENABLED", "value": "true"}
			base := fmt.Sprintf("/spec/%s/%d/env", l.field, i)
			if c.Env == nil {
				return []sdk.PatchOp{{Op: "add", Path: base, Value: []any{env}}}, nil
			}
			return []sdk.PatchOp{{Op: "add", Path: base + "/-", Value: env}}, nil
		}
	}
	return nil, nil
}

// deadAddr is an address where nothing listens: an extension whose hook
// server is not running.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestInjectorContributorThroughTheWebhook wires InjectorContributor into
// the injector as controller injector does (Injector.Contributors) and
// checks the admission response that the API server gets: the pod's
// proxy, added by the core, gets the extension's variable; the patch
// applies to the pod as submitted; an extension whose hook fails costs a
// warning and an Event (none for a dry run), and one whose binary cannot be
// fetched is not run; neither fails the injection.
func TestInjectorContributorThroughTheWebhook(t *testing.T) {
	root, err := pki.NewRoot("test-root", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cs := fake.NewClientset(allowConfigMap(selfDigest(t), "tap", "c-failing", "gone"),
		extNamespace("conduit-tap", "tap", "", map[string]string{AnnotationInjectorHook: distribute(t, "tap")}),
		extNamespace("conduit-c-failing", "c-failing", "", map[string]string{AnnotationInjectorHook: distribute(t, "c-failing")}),
		extNamespace("conduit-gone", "gone", "", map[string]string{AnnotationInjectorHook: deadAddr(t)}),
	)
	ev := &events{}
	h := newTestHooks(t, cs, HooksOptions{Timeout: 500 * time.Millisecond, Backoff: time.Millisecond, Events: ev})
	if err := h.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := injector.DefaultConfig("conduit")
	cfg.Identity.TrustAnchorsPEM = string(pki.CertPEM(root.Cert))

	// The pod as the API server sends it (a Deployment's pod, generateName).
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"generateName":"web-7d4b9c-","labels":{"app":"web"},` +
		`"ownerReferences":[{"apiVersion":"apps/v1","kind":"ReplicaSet","name":"web-7d4b9c","uid":"rs-uid","controller":true}]},` +
		`"spec":{"containers":[{"name":"web","image":"web:1","ports":[{"containerPort":8080}]}]}}`)

	for _, native := range []bool{true, false} {
		t.Run(fmt.Sprintf("native=%v", native), func(t *testing.T) {
			wh := &injector.Webhook{
				Injector: &injector.Injector{ControlPlaneNamespace: "conduit", Config: func() injector.Config { return cfg }, NativeSidecar: native,
					Contributors: []injector.PatchContributor{InjectorContributor{Hooks: h}}},
				Namespaces: func(string) (map[string]string, map[string]string, error) {
					return nil, map[string]string{"conduit.dev/inject": "enabled"}, nil
				},
				Events: ev,
				Log:    slog.New(slog.DiscardHandler),
			}
			srv := httptest.NewServer(wh)
			defer srv.Close()
			for _, dryRun := range []bool{false, true} {
				ev.mu.Lock()
				ev.msgs = nil
				ev.mu.Unlock()
				time.Sleep(2 * time.Millisecond) // past the dead hook's backoff
				resp := admit(t, srv.URL, raw, dryRun)
				if !resp.Allowed || resp.Patch == nil {
					t.Fatalf("dryRun=%v: not injected: %+v", dryRun, resp)
				}
				// What the API server does with the answer.
				patch, err := jsonpatch.DecodePatch(resp.Patch)
				if err != nil {
					t.Fatal(err)
				}
				out, err := patch.Apply(raw)
				if err != nil {
					t.Fatalf("dryRun=%v: the patch does not apply to the submitted pod: %v", dryRun, err)
				}
				var pod corev1.Pod
				if err := json.Unmarshal(out, &pod); err != nil {
					t.Fatal(err)
				}
				proxy := pod.Spec.Containers[0]
				if native {
					proxy = pod.Spec.InitContainers[1]
				}
				var taps int
				for _, e := range proxy.Env {
					if e.Name == "CONDUIT_PROXY_TAP_ENABLED" && e.Value == "true" {
						taps++
					}
				}
				if proxy.Name != injector.ProxyContainerName || taps != 1 {
					t.Errorf("dryRun=%v: proxy %q has CONDUIT_PROXY_TAP_ENABLED=true %d times, want once", dryRun, proxy.Name, taps)
				}
				app := pod.Spec.Containers[len(pod.Spec.Containers)-1]
				if app.Name != "web" || len(app.Env) != 0 {
					t.Errorf("dryRun=%v: the application container was changed: %+v", dryRun, app)
				}
				ev.mu.Lock()
				msgs := append([]string(nil), ev.msgs...)
				ev.mu.Unlock()
				if dryRun && len(msgs) != 0 {
					t.Errorf("events recorded for a dry run: %q", msgs)
				}
				if !dryRun && (len(msgs) != 1 || !strings.Contains(msgs[0], "ExtensionHookFailed extension c-failing")) {
					t.Errorf("events %q, want one about the failing extension", msgs)
				}
			}
		})
	}
}

func admit(t *testing.T, url string, raw []byte, dryRun bool) *admissionv1.AdmissionResponse {
	t.Helper()
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       "uid-1",
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Namespace: "web",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
			DryRun:    &dryRun,
		},
	}
	body, err := json.Marshal(review)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+injector.WebhookPath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil || out.Response == nil {
		t.Fatalf("response %s: %v", data, err)
	}
	return out.Response
}
