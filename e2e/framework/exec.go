package framework

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
)

// ExecE runs cmd in a container of a pod (container "" is the pod's only or default container)
// and returns its stdout and stderr. A non-zero exit is an error.
func (f *Framework) ExecE(ctx context.Context, ns, pod, container string, stdin io.Reader, cmd ...string) (string, string, error) {
	req := f.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{
			Container: container, Command: cmd, Stdin: stdin != nil, Stdout: true, Stderr: true,
		}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(f.Config, http.MethodPost, req.URL())
	if err != nil {
		return "", "", fmt.Errorf("e2e: exec in %s/%s: %w", ns, pod, err)
	}
	var stdout, stderr bytes.Buffer
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: &stdout, Stderr: &stderr})
	if err != nil {
		return stdout.String(), stderr.String(), fmt.Errorf("e2e: exec %q in %s/%s: %w (stderr: %s)",
			strings.Join(cmd, " "), ns, pod, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), stderr.String(), nil
}

// Exec is ExecE failing the test on error; it returns stdout.
func (f *Framework) Exec(t testing.TB, ns, pod, container string, cmd ...string) string {
	t.Helper()
	out, _, err := f.ExecE(Context(t, 2*time.Minute), ns, pod, container, nil, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// PortForward forwards a random local port on 127.0.0.1 to port of a pod until the test ends,
// and returns the local port.
func (f *Framework) PortForward(t testing.TB, ns, pod string, port int) int {
	t.Helper()
	rt, upgrader, err := spdy.RoundTripperFor(f.Config)
	if err != nil {
		t.Fatalf("e2e: port-forward: %v", err)
	}
	url := f.Client.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(pod).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, url)
	stop, ready := make(chan struct{}), make(chan struct{})
	var errOut bytes.Buffer
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(port)}, stop, ready, io.Discard, &errOut)
	if err != nil {
		t.Fatalf("e2e: port-forward to %s/%s:%d: %v", ns, pod, port, err)
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("e2e: port-forward to %s/%s:%d: %v %s", ns, pod, port, err, errOut.String())
	case <-time.After(30 * time.Second):
		close(stop)
		t.Fatalf("e2e: port-forward to %s/%s:%d: not ready after 30s", ns, pod, port)
	}
	t.Cleanup(func() { close(stop); <-done })
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("e2e: port-forward to %s/%s:%d: %v", ns, pod, port, err)
	}
	return int(ports[0].Local)
}
