package podports

import (
	"testing"

	corev1 "k8s.io/api/core/v1"

	"github.com/conduit-mesh/conduit/pkg/ports"
)

func TestNames(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{
		Containers: []corev1.Container{
			{Name: "app", Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}, {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Name: "db", Ports: []corev1.ContainerPort{{Name: "mysql", ContainerPort: 3306, Protocol: corev1.ProtocolTCP}}},
		},
		InitContainers: []corev1.Container{{Name: "sidecar", Ports: []corev1.ContainerPort{{Name: "admin", ContainerPort: 9901}}}},
	}}
	got, err := ports.Parse("http, mysql, admin, 25", Names(pod))
	if err != nil || ports.Format(got) != "8080,3306,9901,25" {
		t.Errorf("got %q, %v", ports.Format(got), err)
	}
	// A UDP port is no TCP port to treat as opaque or to skip.
	for _, bad := range []string{"dns", "redis"} {
		if _, err := ports.Parse(bad, Names(pod)); err == nil {
			t.Errorf("%q resolved", bad)
		}
	}
}

func TestServiceNames(t *testing.T) {
	svc := &corev1.Service{Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
		{Name: "mysql", Port: 3306}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
	}}}
	got, err := ports.Parse("mysql, 7000", ServiceNames(svc))
	if err != nil || ports.Format(got) != "3306,7000" {
		t.Errorf("got %q, %v", ports.Format(got), err)
	}
	if _, err := ports.Parse("dns", ServiceNames(svc)); err == nil {
		t.Error("a UDP port's name resolved")
	}
}
