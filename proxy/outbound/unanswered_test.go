package outbound

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"

	destinationv1 "github.com/conduit-mesh/conduit/proto/destination/v1"
	"github.com/conduit-mesh/conduit/proxy/discovery"
	"github.com/conduit-mesh/conduit/proxy/internal/metricstest"
	"github.com/conduit-mesh/conduit/proxy/internal/servetest"
	"github.com/conduit-mesh/conduit/proxy/origdst"
)

// silentDest is a destination service that accepts streams and never
// answers: a control plane that is slow, or that refuses this proxy (its
// certificate expired).
type silentDest struct {
	destinationv1.UnimplementedDestinationServer
}

func (silentDest) Get(_ *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.Update]) error {
	<-s.Context().Done()
	return nil
}

func (silentDest) GetProfile(_ *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	<-s.Context().Done()
	return nil
}

// profileOnlyDest answers every profile as the Service web.ns's and
// never answers for endpoints: the proxy knows the target is a Service,
// not where its endpoints are or which identities they have.
type profileOnlyDest struct{ silentDest }

func (profileOnlyDest) GetProfile(_ *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	if err := s.Send(&destinationv1.DestinationProfile{FullyQualifiedName: "web.ns.svc.cluster.local"}); err != nil {
		return err
	}
	<-s.Context().Done()
	return nil
}

// unansweredTimeout is the proxies' DiscoveryTimeout in these tests.
const unansweredTimeout = 500 * time.Millisecond

// serveWithDestination serves an outbound proxy whose destination service
// is dest, on loopback, every connection's original destination being dst.
func serveWithDestination(t *testing.T, dest destinationv1.DestinationServer, dst string) string {
	t.Helper()
	p, _ := testProxyOpts(t, dest, discovery.Options{}, func(o *Options) {
		o.DiscoveryTimeout, o.DetectTimeout = unansweredTimeout, time.Second
		o.OrigDst = origdst.Func(func(net.Conn) (netip.AddrPort, error) { return netip.ParseAddrPort(dst) })
	})
	return servetest.Serve(t, p)
}

// pingApp is an application on loopback that answers "ping" with "pong"
// (an opaque exchange) and an HTTP/1.1 request with 200 "app", counting
// its connections in served when not nil. It returns its address.
func pingApp(t *testing.T, served *atomic.Int32) string {
	t.Helper()
	return servetest.TCP(t, func(c net.Conn) {
		if served != nil {
			served.Add(1)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		if b, _ := br.Peek(4); string(b) == "ping" {
			_, _ = io.WriteString(c, "pong")
			return
		}
		if req, err := http.ReadRequest(br); err == nil {
			req.Body.Close()
			_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\napp")
		}
	}).String()
}

// TestUnansweredDiscoveryRefused: without the destination service's answer
// the proxy cannot tell whether a target is meshed (and must get mTLS), so
// it refuses (503, or a reset for an opaque connection) rather than send
// plaintext to the original destination. Once the destination service
// answers that the target is not in the mesh, the proxy forwards to it.
// A refusal comes DiscoveryTimeout after the connection was accepted,
// however many names routing looked up (the original destination, the
// Service, its endpoints): once, not once per lookup.
func TestUnansweredDiscoveryRefused(t *testing.T) {
	var served atomic.Int32
	app := pingApp(t, &served)
	answering := &fakeDest{} // knows no name: nothing is in the mesh
	// The application's address is the cluster IP of web.ns, which has no
	// endpoints.
	_, appPort, _ := net.SplitHostPort(app)
	noEndpoints := &fakeDest{
		profiles:  map[string]*destinationv1.DestinationProfile{app: {FullyQualifiedName: "web.ns.svc.cluster.local"}},
		endpoints: map[string][]string{"web.ns.svc.cluster.local:" + appPort: {}},
	}
	for _, tc := range []struct {
		name      string
		dest      destinationv1.DestinationServer
		host      string // "": an opaque connection
		status    int    // 0: the opaque connection is answered
		immediate bool   // refused at once (an answer), not after the timeout
	}{
		{"HTTP to an IP, no answer", silentDest{}, "10.1.2.3:80", http.StatusServiceUnavailable, false},
		{"HTTP to a Service name, no answer", silentDest{}, "web.ns.svc.cluster.local", http.StatusServiceUnavailable, false},
		{"opaque, no answer", silentDest{}, "", -1, false},
		{"HTTP to an IP, a Service without an endpoints answer", profileOnlyDest{}, "10.1.2.3:80", http.StatusServiceUnavailable, false},
		{"opaque, a Service without an endpoints answer", profileOnlyDest{}, "", -1, false},
		{"opaque, a Service without endpoints", noEndpoints, "", -1, true},
		{"HTTP to an IP, a Service without endpoints", noEndpoints, "10.1.2.3:80", http.StatusServiceUnavailable, true},
		{"HTTP to an IP, not in the mesh", answering, "10.1.2.3:80", http.StatusOK, false},
		{"HTTP to an unknown name, not in the mesh", answering, "example.com", http.StatusOK, false},
		{"opaque, not in the mesh", answering, "", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := served.Load()
			addr := serveWithDestination(t, tc.dest, app)
			start := time.Now()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			var answered time.Duration // from the dial to the answer
			if tc.host == "" {
				if _, err := io.WriteString(c, "ping"); err != nil {
					t.Fatal(err)
				}
				b, err := io.ReadAll(c)
				answered = time.Since(start)
				switch {
				case tc.status == 0 && string(b) != "pong":
					t.Errorf("opaque connection read %q, %v; want pong from the original destination", b, err)
				case tc.status != 0 && (len(b) != 0 || !errors.Is(err, syscall.ECONNRESET)):
					t.Errorf("opaque connection read %q, %v; want a reset", b, err)
				}
			} else {
				if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: "+tc.host+"\r\n\r\n"); err != nil {
					t.Fatal(err)
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), nil)
				if err != nil {
					t.Fatal(err)
				}
				answered = time.Since(start)
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tc.status {
					t.Fatalf("status %d (%s %q), want %d", resp.StatusCode, resp.Header.Get("conduit-proxy-error"), body, tc.status)
				}
				if perr := resp.Header.Get("conduit-proxy-error"); tc.status != http.StatusOK && !tc.immediate &&
					!strings.Contains(perr, "the destination service gave no answer for "+tc.host+" within "+unansweredTimeout.String()) {
					t.Errorf("conduit-proxy-error %q, want one saying the destination service gave no answer", perr)
				}
			}
			wantServed := int32(1)
			if tc.status != 0 && tc.status != http.StatusOK {
				wantServed = 0
				// Half a timeout of slack for a loaded machine; a second
				// wait would take a whole one more.
				switch {
				case tc.immediate && answered >= unansweredTimeout:
					t.Errorf("refused %v after the dial, want at once: the destination service answered", answered)
				case !tc.immediate && (answered < unansweredTimeout || answered >= unansweredTimeout*3/2):
					t.Errorf("refused %v after the dial, want after the discovery timeout (%v), once", answered, unansweredTimeout)
				}
			}
			// The application's handler runs on its own goroutine.
			deadline := time.Now().Add(time.Second)
			for served.Load()-before != wantServed && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := served.Load() - before; got != wantServed {
				t.Errorf("the original destination got %d connections, want %d", got, wantServed)
			}
		})
	}
}

// lateEndpointsDest answers every profile as the Service web.ns's at once,
// and its endpoints (addrs) only after delay: a busy control plane.
type lateEndpointsDest struct {
	silentDest
	addrs []string
	delay time.Duration
}

func (d lateEndpointsDest) GetProfile(r *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.DestinationProfile]) error {
	return profileOnlyDest{}.GetProfile(r, s)
}

func (d lateEndpointsDest) Get(r *destinationv1.GetDestination, s grpc.ServerStreamingServer[destinationv1.Update]) error {
	select {
	case <-time.After(d.delay):
	case <-s.Context().Done():
		return nil
	}
	return (&fakeDest{endpoints: map[string][]string{r.GetPath(): d.addrs}}).Get(r, s)
}

// TestLateFirstRequestWaitsItsOwn: a connection whose original destination
// was answered hands no deadline to what follows. A first request sent
// after the discovery timeout has passed since the connection was
// accepted, or opaque bytes sent as late (detection waited for them),
// still wait for the answers they need (here, the Service's endpoints,
// which come late), and are served.
func TestLateFirstRequestWaitsItsOwn(t *testing.T) {
	app := pingApp(t, nil)
	for _, tc := range []struct{ name, send, want string }{
		{"HTTP", "GET / HTTP/1.1\r\nHost: 10.1.2.3:80\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 OK"},
		{"opaque", "ping", "pong"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serveWithDestination(t, lateEndpointsDest{addrs: []string{app}, delay: unansweredTimeout / 3}, app)
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			time.Sleep(unansweredTimeout * 3 / 2)
			if _, err := io.WriteString(c, tc.send); err != nil {
				t.Fatal(err)
			}
			b, err := io.ReadAll(c)
			if !strings.HasPrefix(string(b), tc.want) {
				t.Errorf("read %q, %v; want %q from the Service's endpoint", b, err, tc.want)
			}
		})
	}
}

// TestOpaqueConnectRefusedIsReset: an opaque connection whose target (not
// in the mesh) refuses the proxy's connect is reset, as the application's
// own connect would have been refused without the mesh, and as when a peer
// proxy's application refuses (proxy/app's TestOpaqueRefusedMTLS). It read
// a clean end of stream before, as from a server that accepted and closed.
func TestOpaqueConnectRefusedIsReset(t *testing.T) {
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(metricstest.ClosedPort(t))))
	addr := serveWithDestination(t, &fakeDest{}, closed)
	for i, send := range []bool{true, false} { // the client speaks first, or waits
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(15 * time.Second))
		if send {
			if _, err := io.WriteString(c, "ping"); err != nil {
				t.Fatal(err)
			}
		}
		b, err := io.ReadAll(c)
		c.Close()
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("connection %d: read %q, %v; want ECONNRESET", i, b, err)
		}
	}
}
