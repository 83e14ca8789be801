package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

type headerFlags []string

func (h *headerFlags) String() string     { return strings.Join(*h, ", ") }
func (h *headerFlags) Set(v string) error { *h = append(*h, v); return nil }

// getCmd sends N GET requests and prints each body. It fails on a transport error or, with
// -expect-status, on any other status code (default: any status outside 2xx).
func getCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("get", flag.ContinueOnError)
	var headers headerFlags
	fs.Var(&headers, "H", "request header 'Key: value' (repeatable)")
	n := fs.Int("n", 1, "number of requests")
	expect := fs.Int("expect-status", 0, "status code every answer must have (0: any 2xx)")
	timeout := fs.Duration("timeout", 5*time.Second, "timeout of each request")
	newConn := fs.Bool("new-conn", false, "open a new connection for every request (no keep-alive)")
	interval := fs.Duration("interval", 0, "pause between two requests")
	summary := fs.Bool("summary", false, "print one line 'N ok' at the end instead of the bodies")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *n < 1 {
		return errUsage
	}
	url := fs.Arg(0)
	if !strings.Contains(url, "://") {
		url = "http://" + url
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{DisableKeepAlives: *newConn, Proxy: nil}}
	for i := 0; i < *n; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		for _, h := range headers {
			k, v, ok := strings.Cut(h, ":")
			if !ok {
				return fmt.Errorf("testapp: header %q: want 'Key: value'", h)
			}
			req.Header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("testapp: GET %s: request %d of %d: %w", url, i+1, *n, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("testapp: GET %s: reading body: %w", url, err)
		}
		if !*summary {
			if _, err := stdout.Write(body); err != nil {
				return fmt.Errorf("testapp: %w", err)
			}
		}
		ok := resp.StatusCode >= 200 && resp.StatusCode < 300
		if *expect != 0 {
			ok = resp.StatusCode == *expect
		}
		if !ok {
			return fmt.Errorf("testapp: GET %s: request %d of %d: status %d", url, i+1, *n, resp.StatusCode)
		}
		if *interval > 0 && i+1 < *n {
			select {
			case <-ctx.Done():
				return fmt.Errorf("testapp: %w after %d requests", ctx.Err(), i+1)
			case <-time.After(*interval):
			}
		}
	}
	if *summary {
		if _, err := fmt.Fprintf(stdout, "%d ok\n", *n); err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
	}
	return nil
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
	if err := fs.Parse(args); err != nil || fs.NArg() != 2 {
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
	if _, err := fmt.Fprintln(c, fs.Arg(1)); err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("testapp: reading answer: %w", err)
	}
	_, err = io.WriteString(stdout, line)
	return err
}
