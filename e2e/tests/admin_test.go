//go:build e2e

package tests

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/conduit-mesh/conduit/e2e/framework"
	"github.com/conduit-mesh/conduit/pkg/pki"
)

// adminGet GETs path from a proxy's admin port, forwarded to localPort
// (framework.PortForward to 4191).
func adminGet(ctx context.Context, localPort int, path string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", localPort, path), nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, string(b), nil
}

// metricSum sums metric name in a Prometheus text exposition over the
// series whose line contains every string of match; 0 when there is none.
func metricSum(exposition, name string, match ...string) float64 {
	sum := 0.0
	for line := range strings.Lines(exposition) {
		line = strings.TrimSuffix(line, "\n")
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") || !containsAll(line, match) {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// proxyChainAt is the chain (leaf first) a proxy presents, from its admin
// port forwarded to localPort.
func proxyChainAt(ctx context.Context, localPort int) ([]*x509.Certificate, error) {
	code, body, err := adminGet(ctx, localPort, "/identity/certificate")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET /identity/certificate = %d:\n%s", code, body)
	}
	chain, err := pki.ParseCertificates([]byte(body))
	if err != nil || len(chain) == 0 {
		return nil, fmt.Errorf("GET /identity/certificate: %v\n%s", err, body)
	}
	return chain, nil
}

// proxyCertificate is the chain (leaf first) a pod's proxy presents.
func proxyCertificate(t *testing.T, f *framework.Framework, ctx context.Context, ns, pod string) []*x509.Certificate {
	t.Helper()
	chain, err := proxyChainAt(ctx, f.PortForward(t, ns, pod, 4191))
	if err != nil {
		t.Fatalf("%s: %v", pod, err)
	}
	return chain
}
