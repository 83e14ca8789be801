package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestEchoHandler(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "shop", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	tests := []struct {
		name       string
		path       string
		header     map[string]string
		wantStatus int
		wantPath   string
	}{
		{name: "echoes pod and headers", path: "/hello?x=1", header: map[string]string{"Conduit-Client-Id": "a.b"}, wantStatus: 200, wantPath: "/hello?x=1"},
		{name: "status code", path: "/status/503", wantStatus: 503, wantPath: "/status/503"},
		{name: "bad status code", path: "/status/99", wantStatus: 400},
		{name: "bad delay", path: "/?delay=soon", wantStatus: 400},
		{name: "delay", path: "/?delay=10ms", wantStatus: 200, wantPath: "/?delay=10ms"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, srv.URL+tt.path, nil)
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantPath == "" {
				return
			}
			var e Echo
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if e.Pod != "web-0" || e.Namespace != "shop" || e.Path != tt.wantPath || e.Method != "GET" {
				t.Errorf("echo = %+v", e)
			}
			for k, v := range tt.header {
				if got := strings.Join(e.Headers[k], ","); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if resp.Header.Get("X-Testapp-Pod") != "web-0" {
				t.Errorf("X-Testapp-Pod = %q", resp.Header.Get("X-Testapp-Pod"))
			}
		})
	}
}

func TestGetCommand(t *testing.T) {
	srv := httptest.NewServer(echoHandler("web-0", "", slog.New(slog.DiscardHandler)))
	defer srv.Close()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "sends headers", args: []string{"-H", "Conduit-Client-Id: spoofed", srv.URL + "/x"}, wantOut: `"Conduit-Client-Id":["spoofed"]`},
		{name: "repeats", args: []string{"-n", "3", "-new-conn", srv.URL}, wantOut: `"pod":"web-0"`},
		{name: "summary with interval", args: []string{"-summary", "-n", "3", "-interval", "10ms", srv.URL}, wantOut: "3 ok\n"},
		{name: "fails on 5xx", args: []string{srv.URL + "/status/500"}, wantErr: "status 500"},
		{name: "expected status", args: []string{"-expect-status", "404", srv.URL + "/status/404"}},
		{name: "unexpected status", args: []string{"-expect-status", "404", srv.URL}, wantErr: "status 200"},
		{name: "bad header", args: []string{"-H", "nocolon", srv.URL}, wantErr: "want 'Key: value'"},
		{name: "no url", args: nil, wantErr: "usage"},
		{name: "no server", args: []string{"-timeout", "1s", "http://127.0.0.1:1/"}, wantErr: "GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := getCmd(context.Background(), tt.args, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "summary with interval" && out.String() != tt.wantOut {
				t.Errorf("summary output %q, want only %q", out.String(), tt.wantOut)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("output %q does not contain %q", out.String(), tt.wantOut)
			}
			if n := strings.Count(out.String(), `"pod"`); tt.args[0] == "-n" && n != 3 {
				t.Errorf("%d answers, want 3", n)
			}
		})
	}
}

func TestTCPEchoAndLookup(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	t.Setenv("POD_NAME", "db-1")
	go tcpEcho(ctx, ln, slog.New(slog.DiscardHandler))
	var out bytes.Buffer
	if err := tcpCmd(ctx, []string{ln.Addr().String(), "ping"}, &out); err != nil {
		t.Fatal(err)
	}
	if want := "db-1 ping from 127.0.0.1\n"; out.String() != want {
		t.Errorf("tcp answer %q, want %q", out.String(), want)
	}
	out.Reset()
	if err := lookupCmd(ctx, []string{"localhost"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "127.0.0.1") && !strings.Contains(out.String(), "::1") {
		t.Errorf("lookup localhost = %q", out.String())
	}
	t.Setenv("TESTAPP_PROBE", "a b=c")
	out.Reset()
	if err := run(ctx, slog.New(slog.DiscardHandler), []string{"env"}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\nTESTAPP_PROBE=a b=c\n") && !strings.HasPrefix(out.String(), "TESTAPP_PROBE=a b=c\n") {
		t.Errorf("env output lacks TESTAPP_PROBE:\n%s", out.String())
	}
	if err := run(ctx, slog.New(slog.DiscardHandler), []string{"nope"}, io.Discard); err != errUsage {
		t.Errorf("unknown command: err = %v, want usage", err)
	}
}

func TestServeShutsDownOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serveCmd(ctx, slog.New(slog.DiscardHandler), []string{"-addr", "127.0.0.1:0", "-tcp-addr", "127.0.0.1:0"})
	}()
	time.Sleep(100 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after cancel")
	}
}
