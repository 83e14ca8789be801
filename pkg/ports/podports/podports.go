package podports

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/conduit-mesh/conduit/pkg/ports"
)

// Names resolves the name of a TCP port that one of pod's containers
// (native sidecars included) declares.
func Names(pod *corev1.Pod) ports.Names {
	return func(name string) (uint16, bool) {
		for _, cs := range [][]corev1.Container{pod.Spec.Containers, pod.Spec.InitContainers} {
			for _, c := range cs {
				for _, p := range c.Ports {
					if p.Name == name && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) && p.ContainerPort > 0 && p.ContainerPort <= 65535 {
						return uint16(p.ContainerPort), true
					}
				}
			}
		}
		return 0, false
	}
}

// ServiceNames resolves the name of one of svc's own TCP ports to its
// (Service) port number.
func ServiceNames(svc *corev1.Service) ports.Names {
	return func(name string) (uint16, bool) {
		for _, p := range svc.Spec.Ports {
			if p.Name == name && (p.Protocol == "" || p.Protocol == corev1.ProtocolTCP) && p.Port > 0 && p.Port <= 65535 {
				return uint16(p.Port), true
			}
		}
		return 0, false
	}
}
