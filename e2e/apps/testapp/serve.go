package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Echo is the JSON body of every answer of the HTTP server.
type Echo struct {
	Pod        string              `json:"pod"`
	Namespace  string              `json:"namespace,omitempty"`
	Method     string              `json:"method"`
	Host       string              `json:"host"`
	Path       string              `json:"path"`
	Proto      string              `json:"proto"`
	RemoteAddr string              `json:"remoteAddr"`
	Headers    map[string][]string `json:"headers"`
}

// podName is the name the server reports: POD_NAME, else the hostname.
func podName() string {
	if p := os.Getenv("POD_NAME"); p != "" {
		return p
	}
	h, _ := os.Hostname()
	return h
}

func echoHandler(pod, namespace string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if d := r.URL.Query().Get("delay"); d != "" {
			delay, err := time.ParseDuration(d)
			if err != nil {
				http.Error(w, "testapp: bad delay: "+err.Error(), http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(delay):
			case <-r.Context().Done():
				return
			}
		}
		status := http.StatusOK
		if code, ok := strings.CutPrefix(r.URL.Path, "/status/"); ok {
			c, err := strconv.Atoi(code)
			if err != nil || c < 200 || c > 599 {
				http.Error(w, "testapp: /status/<code> wants a code in 200..599", http.StatusBadRequest)
				return
			}
			status = c
		}
		e := Echo{
			Pod: pod, Namespace: namespace, Method: r.Method, Host: r.Host, Path: r.URL.RequestURI(),
			Proto: r.Proto, RemoteAddr: r.RemoteAddr, Headers: r.Header,
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Testapp-Pod", pod)
		w.WriteHeader(status)
		if err := json.NewEncoder(w).Encode(e); err != nil {
			log.Warn("writing answer", "err", err)
		}
	})
	return mux
}

func serveCmd(ctx context.Context, log *slog.Logger, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	addr := fs.String("addr", ":8080", "HTTP listen address")
	tcpAddr := fs.String("tcp-addr", "", "TCP echo listen address (empty: none)")
	if err := fs.Parse(args); err != nil {
		return errUsage
	}
	srv := &http.Server{Addr: *addr, Handler: echoHandler(podName(), os.Getenv("POD_NAMESPACE"), log), ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("testapp: %w", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	if *tcpAddr != "" {
		tl, err := net.Listen("tcp", *tcpAddr)
		if err != nil {
			return fmt.Errorf("testapp: %w", err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); tcpEcho(ctx, tl, log) }()
		log.Info("tcp echo listening", "addr", tl.Addr().String())
	}
	go func() { errs <- srv.Serve(ln) }()
	log.Info("http listening", "addr", ln.Addr().String(), "pod", podName())
	select {
	case err := <-errs:
		return fmt.Errorf("testapp: %w", err)
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	wg.Wait()
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("testapp: shutdown: %w", err)
	}
	return nil
}

// tcpEcho answers each line received on a connection with
// "<pod> <line> from <peer-ip>": the peer is the address the application saw,
// the client's own when the proxy was bypassed, the proxy's when it was not.
func tcpEcho(ctx context.Context, ln net.Listener, log *slog.Logger) {
	go func() { <-ctx.Done(); ln.Close() }()
	pod := podName()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("tcp accept", "err", err)
			}
			return
		}
		go func() {
			defer c.Close()
			peer, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			s := bufio.NewScanner(c)
			for s.Scan() {
				if _, err := fmt.Fprintf(c, "%s %s from %s\n", pod, s.Text(), peer); err != nil {
					return
				}
			}
		}()
	}
}
