package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// getCmd sends GET requests and prints each body. It fails on a transport error or, with
// -expect-status, on any other status code (default: any status outside 2xx), or with
// -expect-body on a body lacking the string. By default it sends -n requests and stops at
// the first failure; as a load generator it sends until -duration has passed or (with
// -until-eof) stdin is closed, and with -keep-going counts failures, printing each on
// stderr, and fails at the end if any request failed. It never retries a request.
func getCmd(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	var headers headerFlags
	fs.Var(&headers, "H", "request header 'Key: value' (repeatable)")
	var trailers headerFlags
	fs.Var(&trailers, "T", "request trailer 'Key: value' (repeatable): the request is then a POST whose chunked body \"hello\" ends with the trailers, announced in its Trailer header as net/http does")
	h2c := fs.Bool("h2c", false, "speak HTTP/2 without TLS (prior knowledge) instead of HTTP/1.1")
	method := fs.String("X", http.MethodGet, "request method")
	printHead := fs.Bool("print-head", false, "print each answer's head as a JSON line (status, protocol, Content-Length as the client reads it, -1 when unknown, and header fields) instead of its body")
	n := fs.Int("n", 1, "number of requests (0: no limit, with -duration or -until-eof)")
	expect := fs.Int("expect-status", 0, "status code every answer must have (0: any 2xx)")
	expectBody := fs.String("expect-body", "", "string every answer's body must contain")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each request")
	headerTimeout := fs.Duration("header-timeout", 0, "time to wait for each answer's head once the request is sent (0: no limit but -timeout)")
	expectHints := fs.Bool("expect-early-hints", false, "fail unless every answer was preceded by a 103 Early Hints with a Link header")
	earlyUpload := fs.Int("early-upload", 0, "PUT a body of this many bytes, of which only the first 64 KiB are sent until the answer has come and been read (the rest never is): a client waiting for a refusal on its headers, for a server that answers before it reads the body (serve's ?early=1)")
	readDelay := fs.Duration("read-delay", 0, "time to wait after each answer's head before reading its body (a slow reader; counted in -timeout)")
	newConn := fs.Bool("new-conn", false, "open a new connection for every request (no keep-alive)")
	interval := fs.Duration("interval", 0, "pause between two requests")
	duration := fs.Duration("duration", 0, "stop sending after this long (0: no limit)")
	untilEOF := fs.Bool("until-eof", false, "stop sending when stdin is closed (a generator driven through kubectl exec -i)")
	keepGoing := fs.Bool("keep-going", false, "count failed requests instead of stopping at the first; fail at the end if any failed")
	summary := fs.Bool("summary", false, "print one line 'N ok' (', M failed' with -keep-going) at the end instead of the bodies")
	stats := fs.Bool("stats", false, "with -summary, also print the latencies, how many answers each pod gave (X-Testapp-Pod, X-Testapp-Upstream-Pod) and how many connections were opened")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || !httpguts.ValidHeaderFieldName(*method) || *n < 0 || (*n == 0 && *duration <= 0 && !*untilEOF) || *headerTimeout < 0 || *readDelay < 0 || *earlyUpload < 0 {
		return errUsage
	}
	url := fs.Arg(0)
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	for _, h := range append(slices.Clone(headers), trailers...) {
		if _, _, ok := strings.Cut(h, ":"); !ok {
			return fmt.Errorf("testapp: header %q: want 'Key: value'", h)
		}
	}
	// stop closes when -duration has passed or stdin reached its end. A
	// request under way when it does is completed (and counted).
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopNow := func() { stopOnce.Do(func() { close(stop) }) }
	if *duration > 0 {
		t := time.AfterFunc(*duration, stopNow)
		defer t.Stop()
	}
	if *untilEOF {
		go func() { _, _ = io.Copy(io.Discard, stdin); stopNow() }()
	}
	tr := &http.Transport{DisableKeepAlives: *newConn, Proxy: nil, ResponseHeaderTimeout: *headerTimeout}
	if *h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	client := &http.Client{Timeout: *timeout, Transport: tr}
	var (
		ok, failed int
		latencies  []time.Duration
		pods       = map[string]int{}
		// conns counts the connections the transport opened: with
		// keep-alive, 1 shows that every request went on one connection
		// (a server or proxy that closed it would make the transport
		// open another).
		conns atomic.Int64
	)
	one := func(i int) error {
		var hints []string // the Link of each 103 Early Hints
		trace := &httptrace.ClientTrace{
			GotConn: func(c httptrace.GotConnInfo) {
				if !c.Reused {
					conns.Add(1)
				}
			},
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				if code == http.StatusEarlyHints {
					hints = append(hints, h.Get("Link"))
				}
				return nil
			},
		}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), *method, url, nil)
		if err != nil {
			return err
		}
		if len(trailers) > 0 {
			// The transport announces r.Trailer's names in the Trailer
			// header and sends their values after the last chunk.
			req.Method, req.ContentLength, req.Body = http.MethodPost, -1, io.NopCloser(strings.NewReader("hello"))
			req.Trailer = http.Header{}
			for _, h := range trailers {
				k, v, _ := strings.Cut(h, ":")
				req.Trailer.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		if *earlyUpload > 0 {
			// The first 64 KiB, then nothing until the answer was read.
			pr, pw := io.Pipe()
			answered := make(chan struct{})
			defer close(answered)
			go func() {
				if _, err := pw.Write(make([]byte, min(*earlyUpload, 64<<10))); err == nil {
					// Also at the timeout: net/http's transport, giving up,
					// waits for its read of the body to return.
					select {
					case <-answered:
					case <-time.After(*timeout):
					}
				}
				_ = pw.CloseWithError(errors.New("testapp: the rest of the upload is not sent"))
			}()
			req.Method, req.Body, req.ContentLength = http.MethodPut, pr, int64(*earlyUpload)
		}
		for _, h := range headers {
			k, v, _ := strings.Cut(h, ":")
			req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("%s %s: request %d: %w", req.Method, url, i, err)
		}
		if *readDelay > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(*readDelay):
			}
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("GET %s: request %d: reading body (status %d) after %d bytes: %w", url, i, resp.StatusCode, len(body), err)
		}
		took := time.Since(start)
		latencies = append(latencies, took)
		for _, h := range []string{"X-Testapp-Pod", "X-Testapp-Upstream-Pod"} {
			if p := resp.Header.Get(h); p != "" {
				pods[p]++
			}
		}
		switch {
		case *printHead:
			line, err := json.Marshal(responseHead{Status: resp.StatusCode, Proto: resp.Proto, ContentLength: resp.ContentLength, Headers: resp.Header})
			if err != nil {
				return err
			}
			if _, err := stdout.Write(append(line, '\n')); err != nil {
				return err
			}
		case !*summary:
			if _, err := stdout.Write(body); err != nil {
				return err
			}
		}
		good := resp.StatusCode >= 200 && resp.StatusCode < 300
		if *expect != 0 {
			good = resp.StatusCode == *expect
		}
		if !good {
			return fmt.Errorf("GET %s: request %d: status %d%s: %s (after %v)", url, i, resp.StatusCode, proxyError(resp.Header), bytes.TrimSpace(body), took.Round(time.Millisecond))
		}
		if *expectHints && (len(hints) == 0 || hints[0] == "") {
			return fmt.Errorf("GET %s: request %d: no 103 Early Hints with a Link before the answer (103s seen: %q)", url, i, hints)
		}
		if *expectBody != "" && !bytes.Contains(body, []byte(*expectBody)) {
			return fmt.Errorf("GET %s: request %d: the answer lacks %q: %s", url, i, *expectBody, bytes.TrimSpace(body))
		}
		return nil
	}
loop:
	for i := 1; *n == 0 || i <= *n; i++ {
		select {
		case <-stop:
			break loop
		default:
		}
		if err := one(i); err != nil {
			if !*keepGoing {
				return fmt.Errorf("testapp: %w", err)
			}
			failed++
			fmt.Fprintf(stderr, "%s testapp: %v\n", time.Now().UTC().Format(time.RFC3339Nano), err)
		} else {
			ok++
		}
		if *n != 0 && i == *n {
			break
		}
		if *interval > 0 {
			select {
			case <-ctx.Done():
			case <-stop:
				break loop
			case <-time.After(*interval):
			}
		}
		if ctx.Err() != nil {
			return fmt.Errorf("testapp: %w after %d requests", ctx.Err(), i)
		}
	}
	if *summary {
		line := fmt.Sprintf("%d ok", ok)
		if failed > 0 {
			line += fmt.Sprintf(", %d failed", failed)
		}
		if *stats {
			line += "\n" + latencySummary(latencies) + "\n" + podSummary(pods) + fmt.Sprintf("\nconnections %d", conns.Load())
		}
		if _, err := fmt.Fprintln(stdout, line); err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
	}
	if failed > 0 {
		return fmt.Errorf("testapp: %d of %d requests failed", failed, ok+failed)
	}
	return nil
}

// latencySummary is "latency p50=… p99=… max=…" of the answered requests.
func latencySummary(ls []time.Duration) string {
	if len(ls) == 0 {
		return "latency: no answer"
	}
	slices.Sort(ls)
	at := func(q float64) time.Duration {
		return ls[min(len(ls)-1, int(q*float64(len(ls))))].Round(time.Millisecond)
	}
	return fmt.Sprintf("latency p50=%s p99=%s max=%s", at(0.5), at(0.99), ls[len(ls)-1].Round(time.Millisecond))
}

// podSummary is "pods a=N b=M …", sorted by name.
func podSummary(pods map[string]int) string {
	names := slices.Sorted(maps.Keys(pods))
	var b strings.Builder
	b.WriteString("pods")
	for _, p := range names {
		fmt.Fprintf(&b, " %s=%d", p, pods[p])
	}
	return b.String()
}

func lookupCmd(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 1 {
		return errUsage
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, args[0])
	if err != nil {
		return fmt.Errorf("testapp: lookup %s: %w", args[0], err)
	}
	for _, a := range addrs {
		fmt.Fprintln(stdout, a)
	}
	return nil
}

func tcpCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("tcp", flag.ContinueOnError)
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of the exchange")
	banner := fs.Duration("banner", 0, "the server speaks first: read and print its line, which must arrive within this long of the connection, before sending (0: the client speaks first)")
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 || *banner < 0 {
		return errUsage
	}
	d := net.Dialer{Timeout: *timeout}
	c, err := d.DialContext(ctx, "tcp", fs.Arg(0))
	if err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(*timeout)); err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	r := bufio.NewReader(c)
	if *banner > 0 {
		start := time.Now()
		if err := c.SetReadDeadline(start.Add(min(*banner, *timeout))); err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		greeting, err := r.ReadString('\n')
		if err != nil {
			return fmt.Errorf("testapp: no banner from %s within %v of connecting (did a proxy wait for the client to speak first?): %w", fs.Arg(0), *banner, err)
		}
		if _, err := io.WriteString(stdout, greeting); err != nil {
			return err
		}
		if err := c.SetDeadline(time.Now().Add(*timeout)); err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
	}
	if _, err := fmt.Fprintln(c, fs.Arg(1)); err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return fmt.Errorf("testapp: reading answer: %w", err)
	}
	_, err = io.WriteString(stdout, line)
	return err
}

// responseHead is what get -print-head prints of an answer.
type responseHead struct {
	Status        int                 `json:"status"`
	Proto         string              `json:"proto"`
	ContentLength int64               `json:"contentLength"`
	Headers       map[string][]string `json:"headers"`
}
