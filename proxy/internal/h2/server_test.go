package h2

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// TestServerRapidReset: a client that opens streams and resets them at
// once must not pile up handlers: past MaxConcurrentStreams running
// handlers, new streams are refused even though none is open.
func TestServerRapidReset(t *testing.T) {
	const max = 4
	release := make(chan struct{})
	started := make(chan struct{}, 100)
	srv := &Server{MaxConcurrentStreams: max, Handler: rtFunc(func(r *http.Request) (*http.Response, error) {
		started <- struct{}{}
		<-release // a handler slow to notice the reset
		return nil, r.Context().Err()
	})}
	defer close(release)
	cc, sc := net.Pipe()
	defer cc.Close()
	go func() { _ = srv.ServeConn(context.Background(), sc) }()
	_ = cc.SetDeadline(time.Now().Add(10 * time.Second))

	fr := http2.NewFramer(cc, cc)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	// net.Pipe is synchronous: read the server's frames concurrently.
	refused := make(chan uint32, 100)
	go func() {
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				close(refused)
				return
			}
			if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.ErrCode == http2.ErrCodeRefusedStream {
				refused <- rst.StreamID
			}
		}
	}()
	if _, err := cc.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	var hbuf bytes.Buffer
	enc := hpack.NewEncoder(&hbuf)
	for i := range 2 * max {
		id := uint32(2*i + 1)
		hbuf.Reset()
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: hbuf.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
			t.Fatal(err)
		}
		if i < max {
			select {
			case <-started:
			case <-time.After(5 * time.Second):
				t.Fatalf("stream %d: handler did not start", id)
			}
		}
		if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint32
	for len(got) < max {
		select {
		case id, ok := <-refused:
			if !ok {
				t.Fatalf("connection ended; refused %v", got)
			}
			got = append(got, id)
		case <-time.After(5 * time.Second):
			t.Fatalf("refused streams %v, want the last %d", got, max)
		}
	}
	for i, id := range got {
		if want := uint32(2*(max+i) + 1); id != want {
			t.Errorf("refused stream %d, want %d", id, want)
		}
	}
	if n := len(started); n != 0 {
		t.Errorf("%d handlers started past the limit", n)
	}
}

// TestServerExpectContinue: a client that waits for 100 Continue before
// sending its body gets it when the handler starts reading, not after its
// own timeout.
func TestServerExpectContinue(t *testing.T) {
	cl := &http.Client{Transport: &http.Transport{Protocols: h2cOnly(), ExpectContinueTimeout: 5 * time.Second}}
	srv := &Server{Handler: benchEcho{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = srv.ServeConn(context.Background(), c) }()
		}
	}()
	defer srv.Shutdown()
	req, _ := http.NewRequest(http.MethodPut, "http://"+ln.Addr().String()+"/up", strings.NewReader("payload"))
	req.Header.Set("Expect", "100-continue")
	start := time.Now()
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "payload" {
		t.Errorf("body %q, want the request's", body)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("exchange took %v: the client waited out its 100-continue timeout", d)
	}
}
