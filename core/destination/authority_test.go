package destination

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func TestParseAuthority(t *testing.T) {
	tests := []struct {
		in                 string
		wantErr, known     bool
		ns, name, host, ip string
		port               uint32
	}{
		{in: "web.emojivoto.svc.cluster.local:8080", known: true, ns: "emojivoto", name: "web", port: 8080},
		{in: "WEB.emojivoto.svc.cluster.local.:80", known: true, ns: "emojivoto", name: "web", port: 80},
		{in: "web.emojivoto.svc.cluster.local", known: true, ns: "emojivoto", name: "web", port: 80},
		{in: "db-0.db.emojivoto.svc.cluster.local:5432", known: true, ns: "emojivoto", name: "db", host: "db-0", port: 5432},
		{in: "10.0.0.1:8080", known: true, ip: "10.0.0.1", port: 8080},
		{in: "[fd00::1]:8080", known: true, ip: "fd00::1", port: 8080},
		{in: "example.com:443", known: false, port: 443},
		{in: "", wantErr: true},
		{in: "web.emojivoto.svc.cluster.local:0", wantErr: true},
		{in: "web.emojivoto.svc.cluster.local:http", wantErr: true},
		{in: "web.emojivoto.svc.cluster.local:70000", wantErr: true},
		{in: "10.0.0.1", wantErr: true},
		{in: "a.b.c.d.svc.cluster.local:80", wantErr: true},
		{in: "we_b.emojivoto.svc.cluster.local:80", wantErr: true},
		{in: "[fd00::1:80", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseAuthority(tc.in, "cluster.local")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			ip := ""
			if got.ip.IsValid() {
				ip = got.ip.String()
			}
			if got.known != tc.known || got.ns != tc.ns || got.name != tc.name || got.hostname != tc.host || ip != tc.ip || got.port != tc.port {
				t.Fatalf("got %+v (ip %s)", got, ip)
			}
		})
	}
}

func TestParsePorts(t *testing.T) {
	s, err := parsePorts("25, 3306-3308,http", nil)
	if err == nil {
		t.Fatal("an unknown port name without a pod must be reported")
	}
	for _, p := range []uint32{25, 3306, 3307, 3308} {
		if !s.has(p) {
			t.Errorf("port %d missing", p)
		}
	}
	if s.has(3309) || s.has(80) {
		t.Error("extra ports")
	}
	if _, err := parsePorts("10-5", nil); err == nil {
		t.Error("reversed range accepted")
	}
	// As the injector and the proxy read it: space around a range's bounds,
	// an empty item, and the names of the pod's container ports.
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "greeting", ContainerPort: 7200}}}}}}
	s, err = parsePorts("8000 - 8002, greeting,", pod)
	if err != nil || !s.has(8000) || !s.has(8001) || !s.has(8002) || !s.has(7200) || s.has(7999) || s.has(8003) {
		t.Errorf("got %v, %v", s, err)
	}
}

// TestTrimKeepsPortNames: the pod cache keeps what parsePorts reads, the
// names of its containers' ports, native sidecars' included, as the injector
// resolves them; it drops the rest of the containers.
func TestTrimKeepsPortNames(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "app", Image: "app:1", Args: []string{"serve"},
			Ports: []corev1.ContainerPort{{Name: "greeting", ContainerPort: 7200}}}},
		InitContainers: []corev1.Container{{Name: "sidecar", Image: "sidecar:1", RestartPolicy: &always,
			Ports: []corev1.ContainerPort{{Name: "metrics", ContainerPort: 9102}}}},
		Volumes: []corev1.Volume{{Name: "data"}},
	}}
	obj, err := trim(pod)
	if err != nil {
		t.Fatal(err)
	}
	p := obj.(*corev1.Pod)
	if p.Spec.Containers[0].Image != "" || p.Spec.InitContainers[0].Image != "" || p.Spec.Volumes != nil {
		t.Errorf("trim kept more than the ports: %+v", p.Spec)
	}
	s, err := parsePorts("greeting, metrics", p)
	if err != nil || !s.has(7200) || !s.has(9102) {
		t.Errorf("parsePorts on the trimmed pod = %v, %v", s, err)
	}
}

// BenchmarkParsePortsWide: a pod that marks every port opaque is read at
// every endpoint recompute; its list must not cost by its width.
func BenchmarkParsePortsWide(b *testing.B) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}}}
	b.ReportAllocs()
	for b.Loop() {
		s, err := parsePorts("1-65535", pod)
		if err != nil || !s.has(8080) {
			b.Fatal(s, err)
		}
	}
}

// TestPodOpaquePortsReportedOnce: a pod's list is read at every recompute of
// every Service it is behind; a bad item is logged once per pod and value,
// and the valid items still apply.
func TestPodOpaquePortsReportedOnce(t *testing.T) {
	var log bytes.Buffer
	x, err := NewIndex(Config{Client: fake.NewClientset(), Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "db-0", Namespace: "data", UID: "db-0-uid",
			Annotations: map[string]string{OpaquePortsAnnotation: "greeting, bogus"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Ports: []corev1.ContainerPort{{Name: "greeting", ContainerPort: 7200}}}}},
	}
	reports := func() int { return strings.Count(log.String(), "bad opaque-ports annotation on pod") }
	for range 3 {
		if s := x.podOpaquePorts(pod); !s.has(7200) || s.has(7201) {
			t.Fatalf("podOpaquePorts = %v, want the valid item 7200 only", s)
		}
	}
	if n := reports(); n != 1 {
		t.Errorf("reported %d times over 3 reads, want once:\n%s", n, log.String())
	}
	if !strings.Contains(log.String(), `\"bogus\" is not a port`) {
		t.Errorf("the report does not name the bad item:\n%s", log.String())
	}
	pod.Annotations[OpaquePortsAnnotation] = "greeting, bogus2"
	x.podOpaquePorts(pod)
	if n := reports(); n != 2 {
		t.Errorf("a new bad value: %d reports, want 2", n)
	}
}

// TestParseAuthorityMessages: a malformed authority is refused with a
// message that says what is wrong with it.
func TestParseAuthorityMessages(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "empty authority"},
		{"fd00::1", "an IPv6 address must be in brackets"},
		{"fd00::1:8080", "an IPv6 address must be in brackets"},
		{"[fd00::1]", "an IP address needs a port"},
		{"10.0.0.1", "an IP address needs a port"},
		{"web.emojivoto.svc.cluster.local:65536", "not a number in 1-65535"},
		{"a.b.c.d.svc.cluster.local:80", "expected <service>.<namespace>.svc.cluster.local"},
		{"we_b.emojivoto.svc.cluster.local:80", "neither an IP nor a DNS name"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			_, err := parseAuthority(tc.in, "cluster.local")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// TestFirstReportBounded: the memory of reports is bounded; past the bound
// it starts over, so a value still bad is reported again.
func TestFirstReportBounded(t *testing.T) {
	x, err := NewIndex(Config{Client: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	if !x.firstReport("a") || x.firstReport("a") {
		t.Fatal("a key is reported once")
	}
	for i := range maxBadSeen {
		x.firstReport("k" + strconv.Itoa(i))
	}
	if n := len(x.badSeen); n > maxBadSeen {
		t.Fatalf("%d reports remembered, want at most %d", n, maxBadSeen)
	}
	if !x.firstReport("a") {
		t.Error("after the memory started over, a key is reported again")
	}
}
