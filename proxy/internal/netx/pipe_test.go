package netx

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/pkg/pki"
	"github.com/conduit-mesh/conduit/proxy/internal/tlstest"
	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// tlsPair returns a TLS client (over Owned over Conn, as the proxies dial)
// and the TLS server it talks to.
func tlsPair(t *testing.T, info *Info) (client, server *tls.Conn) {
	t.Helper()
	root, err := pki.NewRoot("root.test", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cert := tlstest.Leaf(t, root, "server.test", time.Hour)
	pool := x509.NewCertPool()
	pool.AddCert(root.Cert)
	c1, c2 := pair(t)
	client = tls.Client(&Owned{Conn: Wrap(c1, info), Info: info}, &tls.Config{ServerName: "server.test", RootCAs: pool, MinVersion: tls.VersionTLS13})
	server = tls.Server(c2, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13})
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	return client, server
}

// Through TLS, Pipe batches the records of each chunk (corking) and drains
// the records already received: the bytes and their counts must be exact.
func TestPipeTLSIntegrityAndCounts(t *testing.T) {
	reg := metrics.New()
	a1, a2 := pair(t)
	dstInfo := &Info{}
	dstInfo.Open(reg, metrics.TCPKey{Direction: "outbound", Peer: "dst", TLS: true})
	tc, ts := tlsPair(t, dstInfo)
	// The TLS server echoes everything, then closes its side.
	go func() { _, _ = io.Copy(ts, ts); _ = ts.CloseWrite() }()
	done := make(chan struct{})
	go func() {
		Pipe(Wrap(a2, &Info{}), tc, reg.Open(metrics.TCPKey{Direction: "outbound", Peer: "pipe"}))
		close(done)
	}()

	const total = 3<<20 + 12345
	payload := make([]byte, total)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range payload {
		payload[i] = byte(rng.Uint32())
	}
	go func() {
		// Writes of varied sizes: small ones, and bursts larger than a buffer.
		for off := 0; off < total; {
			n := min(total-off, 1+rng.IntN(200<<10))
			if _, err := a1.Write(payload[off : off+n]); err != nil {
				return
			}
			off += n
		}
		_ = a1.(*net.TCPConn).CloseWrite()
	}()
	_ = a1.SetReadDeadline(time.Now().Add(20 * time.Second))
	got, err := io.ReadAll(a1)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, payload) {
		t.Fatalf("echo differs: got %d bytes, want %d", len(got), len(payload))
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not finish")
	}
	var text strings.Builder
	_, _ = reg.WriteTo(&text)
	for _, want := range []string{
		`tcp_write_bytes_total{direction="outbound",peer="pipe",tls="false"} ` + strconv.Itoa(total) + "\n",
		`tcp_read_bytes_total{direction="outbound",peer="pipe",tls="false"} ` + strconv.Itoa(total) + "\n",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("metrics lack %s\n%s", want, text.String())
		}
	}
	// The TLS connection's own counters saw the records (corked writes
	// included): the payload plus at most a few percent of overhead.
	for _, name := range []string{"tcp_write_bytes_total", "tcp_read_bytes_total"} {
		prefix := name + `{direction="outbound",peer="dst",tls="true"} `
		i := strings.Index(text.String(), prefix)
		if i < 0 {
			t.Fatalf("no %s", prefix)
		}
		line := text.String()[i+len(prefix):]
		n, _ := strconv.Atoi(line[:strings.IndexByte(line, '\n')])
		if n < total || n > total+total/50 {
			t.Errorf("%s = %d, want the payload %d plus TLS overhead", name, n, total)
		}
	}
}

func TestBufferSmallBody(t *testing.T) {
	tests := []struct {
		name     string
		body     io.Reader
		length   int64
		expect   bool
		buffered bool
	}{
		{"small known length", strings.NewReader("hello"), 5, false, true},
		{"at the limit", bytes.NewReader(make([]byte, SmallBody)), SmallBody, false, true},
		{"too large", bytes.NewReader(make([]byte, SmallBody+1)), SmallBody + 1, false, false},
		{"unknown length", strings.NewReader("hello"), -1, false, false},
		{"expect 100-continue", strings.NewReader("hello"), 5, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest(http.MethodPost, "http://x/", nil)
			orig := io.NopCloser(struct{ io.Reader }{tt.body}) // not in memory for net/http
			r.Body, r.ContentLength = orig, tt.length
			if tt.expect {
				r.Header.Set("Expect", "100-continue")
			}
			if err := BufferSmallBody(r); err != nil {
				t.Fatal(err)
			}
			if buffered := r.Body != orig; buffered != tt.buffered {
				t.Fatalf("buffered %v, want %v", buffered, tt.buffered)
			}
			b, _ := io.ReadAll(r.Body)
			if tt.length > 0 && int64(len(b)) != tt.length {
				t.Errorf("body %d bytes, want %d", len(b), tt.length)
			}
		})
	}
	// A body shorter than its Content-Length is an error, not a short request.
	r, _ := http.NewRequest(http.MethodPost, "http://x/", nil)
	r.Body, r.ContentLength = io.NopCloser(struct{ io.Reader }{strings.NewReader("abc")}), 10
	if err := BufferSmallBody(r); err == nil {
		t.Error("truncated body accepted")
	}
}

// A piped TLS connection that pauses after a burst keeps neither the 64 KiB
// copy buffer nor the cork buffer: memory of idle connections is small.
func TestPipeIdleHoldsNoLargeBuffers(t *testing.T) {
	a1, a2 := pair(t)
	dstInfo := &Info{}
	tc, ts := tlsPair(t, dstInfo)
	go func() { _, _ = io.Copy(ts, ts) }()
	go Pipe(Wrap(a2, &Info{}), tc, metrics.New().Open(metrics.TCPKey{Direction: "outbound", Peer: "pipe"}))
	_ = a1.SetDeadline(time.Now().Add(10 * time.Second))
	echo := func(n int) {
		t.Helper()
		msg := bytes.Repeat([]byte{'x'}, n)
		go func() { _, _ = a1.Write(msg) }()
		if _, err := io.ReadFull(a1, make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	corked := func() bool {
		k := tc.NetConn().(*Owned).Conn.(*Conn).ck.Load()
		k.mu.Lock()
		defer k.mu.Unlock()
		return k.buf != nil
	}
	echo(1 << 20) // a burst: both copies read into 64 KiB buffers
	echo(100)     // then a short message: each copy's next read is short
	// The copies have written the short message, so each has finished the
	// read that came back short; the buffers return before their next read.
	deadline := time.Now().Add(5 * time.Second)
	for bigLent.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := bigLent.Load(); n != 0 {
		t.Errorf("%d 64 KiB copy buffers still lent to an idle pipe", n)
	}
	if corked() {
		t.Error("the cork buffer is kept after its chunk was written")
	}
}

// lateReset is the dialed side of a Pipe whose peer reset it: a write
// fails with EPIPE, and the read, which took the reset's ECONNRESET first,
// returns it only once the Pipe has closed the connection (the reading
// goroutine had not run since its system call returned). The reset must
// still be what counts the connection, not the write's echo of it: with
// the count taken when the failed write's copy closed the connection, it
// was EPIPE.
type lateReset struct {
	closed chan struct{}
	once   sync.Once
}

func (c *lateReset) Read([]byte) (int, error) {
	<-c.closed
	return 0, errReset
}

func (c *lateReset) Write([]byte) (int, error) {
	return 0, errPipe
}

func (c *lateReset) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *lateReset) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *lateReset) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *lateReset) SetDeadline(time.Time) error      { return nil }
func (c *lateReset) SetReadDeadline(time.Time) error  { return nil }
func (c *lateReset) SetWriteDeadline(time.Time) error { return nil }

func TestPipeCountsResetNotedAfterClose(t *testing.T) {
	reg := metrics.New()
	info := &Info{}
	info.Open(reg, metrics.TCPKey{Direction: "outbound", Peer: "dst"})
	b := &Owned{Conn: &lateReset{closed: make(chan struct{})}, Info: info}
	a1, a2 := pair(t)
	if _, err := a1.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_ = Pipe(Wrap(a2, &Info{}), b, metrics.TCP{})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Pipe did not finish")
	}
	// The Pipe closed b, and counted it once both copies had returned; the
	// owner's close afterwards changes nothing.
	_ = b.Close()
	if got := closeCounts(t, reg, `direction="outbound",peer="dst",tls="false"`); got != resetOnly {
		t.Errorf("tcp_close_total %s, want %s", got, resetOnly)
	}
}
