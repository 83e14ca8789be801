package h2

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// streamingRequest is a POST whose body, size bytes of a pattern, comes
// through a pipe (unknown length, as gRPC's); read counts what the client
// took of it.
func streamingRequest(t *testing.T, size int, read *atomic.Int64) (*http.Request, []byte) {
	t.Helper()
	body := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	pr, pw := io.Pipe()
	go func() {
		for off := 0; off < len(body); off += 4096 {
			if _, err := pw.Write(body[off:min(off+4096, len(body))]); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, "http://svc/", countingReader{pr, read})
	req.ContentLength = -1
	return req, body
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (c countingReader) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// digestHandler answers the SHA-256 and length of the request body.
func digestBody(r *http.Request) (*http.Response, error) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		return nil, err
	}
	s := fmt.Sprintf("%x %d", h.Sum(nil), n)
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(s)), ContentLength: int64(len(s))}, nil
}

// TestStreamingBodyReplayedAfterRefusal: a request with a large streaming
// body that the server refuses unprocessed (its handler did not read it,
// as the inbound proxy when the application cannot be reached) is sent
// again whole: the server's stream window stays at the protocol's initial
// one until the handler reads, so the client had read little of the body,
// and kept it. Before, the client sent up to 4 MiB at once, kept nothing,
// and failed the request.
func TestStreamingBodyReplayedAfterRefusal(t *testing.T) {
	var calls atomic.Int32
	cl := benchPair(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		if calls.Add(1) == 1 {
			time.Sleep(50 * time.Millisecond) // the client sends what the window allows
			return nil, fmt.Errorf("inbound: connect to the application: %w", ErrRefuse)
		}
		return digestBody(r)
	}))
	var read atomic.Int64
	req, body := streamingRequest(t, 1<<20, &read)
	resp, err := cl.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v, want the refused request sent again", err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := fmt.Sprintf("%x %d", sha256.Sum256(body), len(body)); string(got) != want {
		t.Errorf("the server received %q, want %q (the whole body, once)", got, want)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("handler called %d times, want 2", n)
	}
}

// TestServerWindowOpensOnRead: until its handler reads the body, a client
// can send no more than the protocol's initial stream window of it; then
// the window widens and the rest flows.
func TestServerWindowOpensOnRead(t *testing.T) {
	release := make(chan struct{})
	cl := benchPair(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		<-release
		return digestBody(r)
	}))
	var read atomic.Int64
	req, body := streamingRequest(t, 1<<20, &read)
	type result struct {
		resp *http.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := cl.RoundTrip(req)
		done <- result{resp, err}
	}()
	time.Sleep(200 * time.Millisecond)
	// What was sent, plus one buffer read and waiting for window.
	if n := read.Load(); n > initialWindow+2*maxFrame {
		t.Errorf("the client read %d bytes of the body before the handler read any, want at most %d", n, initialWindow+2*maxFrame)
	}
	close(release)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	got, _ := io.ReadAll(r.resp.Body)
	r.resp.Body.Close()
	if want := fmt.Sprintf("%x %d", sha256.Sum256(body), len(body)); string(got) != want {
		t.Errorf("the server received %q, want %q", got, want)
	}
}

// TestStreamingBodyPastLimitNotReplayed: a server that is not one of this
// package's may grant a large window at once and take more than
// replayLimit of a body before it refuses the stream; the client kept no
// more than the limit, so the refusal fails the request: refused, not
// marked unsent (the caller must not send it elsewhere either).
func TestStreamingBodyPastLimitNotReplayed(t *testing.T) {
	// A raw server granting 4 MiB of window at once: it takes twice the
	// limit, then refuses; a stream sent again is never answered (the
	// request's deadline ends it).
	var refused atomic.Int32
	got := 0
	addr := serveScript(t, func(fr *http2.Framer) {
		_ = fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 4 << 20})
		_ = fr.WriteWindowUpdate(0, 16<<20)
	}, func(fr *http2.Framer, f http2.Frame) {
		if d, ok := f.(*http2.DataFrame); ok {
			if got += len(d.Data()); got > 2*replayLimit && refused.Add(1) == 1 {
				_ = fr.WriteRSTStream(d.StreamID, http2.ErrCodeRefusedStream)
			}
		}
	})
	var read atomic.Int64
	req, _ := streamingRequest(t, 1<<20, &read)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err := clientTo(t, addr).RoundTrip(req.WithContext(ctx))
	if !errors.Is(err, ErrRefused) || errors.Is(err, netx.ErrUnsent) {
		t.Fatalf("err %v, want refused, not marked unsent", err)
	}
	if n := read.Load(); n <= replayLimit {
		t.Errorf("the client read %d bytes of the body, want more than replayLimit (%d) for the test to prove anything", n, replayLimit)
	}
}

// TestReplayBodyHandOff: an attempt's Read in flight when the body goes to
// the next attempt returns errReplaced, and its bytes are the next
// attempt's; after commit nothing more is kept.
func TestReplayBodyHandOff(t *testing.T) {
	pr, pw := io.Pipe()
	b := newReplayBody(pr)
	first := &b.first
	buf := make([]byte, 8)
	go func() { _, _ = pw.Write([]byte("abc")) }()
	if n, err := first.Read(buf); err != nil || string(buf[:n]) != "abc" {
		t.Fatalf("first read %q %v", buf[:n], err)
	}
	inFlight := make(chan error, 1)
	go func() {
		_, err := first.Read(make([]byte, 8))
		inFlight <- err
	}()
	time.Sleep(20 * time.Millisecond) // first is in pr.Read
	second, ok := b.rewind()
	if !ok {
		t.Fatal("rewind refused with 3 bytes kept")
	}
	go func() { _, _ = pw.Write([]byte("def")); pw.Close() }()
	if err := <-inFlight; !errors.Is(err, errReplaced) {
		t.Errorf("the earlier attempt's Read: %v, want errReplaced", err)
	}
	if err := first.Close(); err != nil {
		t.Error(err)
	}
	got, err := io.ReadAll(second)
	if err != nil || string(got) != "abcdef" {
		t.Errorf("second attempt read %q %v, want abcdef", got, err)
	}
	b.commit()
	if b.kept != nil {
		t.Errorf("after commit %d bytes kept", len(b.kept))
	}
	if _, ok := b.rewind(); ok {
		t.Error("rewind after commit")
	}

	// Past replayLimit nothing is kept.
	b = newReplayBody(io.NopCloser(bytes.NewReader(make([]byte, replayLimit+1))))
	if n, err := io.Copy(io.Discard, &b.first); err != nil || n != replayLimit+1 {
		t.Fatalf("read %d %v", n, err)
	}
	if _, ok := b.rewind(); ok || b.kept != nil {
		t.Errorf("rewind past the limit allowed (kept %d)", len(b.kept))
	}
}

// TestStreamingBodyTakenNotReplayed: once the server has read some of the
// body (its window update says so), the client keeps it no longer: a
// refusal after that is not sent again, though little was read.
func TestStreamingBodyTakenNotReplayed(t *testing.T) {
	var calls atomic.Int32
	cl := benchPair(t, rtFunc(func(r *http.Request) (*http.Response, error) {
		calls.Add(1)
		_, _ = io.CopyN(io.Discard, r.Body, 32<<10) // past a quarter of the window: an update goes out
		time.Sleep(50 * time.Millisecond)           // and arrives
		return nil, fmt.Errorf("test: %w", ErrRefuse)
	}))
	var read atomic.Int64
	req, _ := streamingRequest(t, 100<<10, &read) // within replayLimit: only the commit stops a replay
	_, err := cl.RoundTrip(req)
	if !errors.Is(err, ErrRefused) || errors.Is(err, netx.ErrUnsent) {
		t.Fatalf("err %v, want refused, not marked unsent", err)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("handler called %d times, want 1 (the body was taken)", n)
	}
}
