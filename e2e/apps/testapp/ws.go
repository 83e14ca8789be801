package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// wsHub serves /ws, a WebSocket echo, and keeps its open connections so
// that the server can close them cleanly when it stops.
type wsHub struct {
	pod string
	log *slog.Logger

	mu    sync.Mutex
	conns map[*websocket.Conn]struct{}
}

func newWSHub(pod string, log *slog.Logger) *wsHub {
	return &wsHub{pod: pod, log: log, conns: map[*websocket.Conn]struct{}{}}
}

// ServeHTTP upgrades the request, greets the client with
// "hello pod=<pod> client-id=<conduit-client-id>" and answers each
// message with "<pod> <message>", of the same kind (text or binary).
func (h *wsHub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	up := websocket.Upgrader{HandshakeTimeout: 10 * time.Second}
	c, err := up.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client
	}
	defer c.Close()
	hello := fmt.Sprintf("hello pod=%s client-id=%s", h.pod, r.Header.Get("Conduit-Client-Id"))
	if err := c.WriteMessage(websocket.TextMessage, []byte(hello)); err != nil {
		return
	}
	// Counted once greeted: a close frame from closeAll comes after the
	// greeting.
	h.mu.Lock()
	h.conns[c] = struct{}{}
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.conns, c)
		h.mu.Unlock()
	}()
	for {
		kind, msg, err := c.ReadMessage()
		if err != nil {
			return // the client closed (ReadMessage answered its close frame), or the connection is gone
		}
		if err := c.WriteMessage(kind, append([]byte(h.pod+" "), msg...)); err != nil {
			return
		}
	}
}

// open is how many WebSockets are open.
func (h *wsHub) open() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

// closeAll sends every open WebSocket a close frame (1001, going away)
// and gives the clients until ctx ends to answer it before their
// connections close.
func (h *wsHub) closeAll(ctx context.Context) {
	h.mu.Lock()
	conns := make([]*websocket.Conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Second)
	}
	for _, c := range conns {
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server stopping")
		if err := c.WriteControl(websocket.CloseMessage, msg, deadline); err != nil {
			h.log.Warn("websocket close", "err", err)
		}
	}
	if len(conns) > 0 {
		h.log.Info("websockets closed", "count", len(conns))
	}
	// The handlers' reads end with the clients' close frames.
	for h.open() > 0 && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	for _, c := range conns {
		_ = c.Close()
	}
}

// wsCmd is `testapp ws [-n N] [-message M] [-hold D] [-timeout T] URL`: it
// opens a WebSocket, prints the server's greeting ("hello pod=...
// client-id=..."), sends N messages ("M 1", "M 2"...), each echoed before
// the next, and prints "N ok". Then, without -hold, it closes (1000) and
// waits for the server's answer; with -hold it waits up to D for the server
// to close and prints "closed by the server after <time>: <code> <reason>",
// failing unless the code is 1000 or 1001 (going away): a connection lost
// without a close frame (1006) is an error.
func wsCmd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("ws", flag.ContinueOnError)
	n := fs.Int("n", 20, "messages to echo")
	hold := fs.Duration("hold", 0, "then wait this long for the server to close (0: close from this side)")
	timeout := fs.Duration("timeout", 30*time.Second, "for the opening and the echoes")
	text := fs.String("message", "message", "the messages are \"<message> 1\", \"<message> 2\"...")
	if err := fs.Parse(args); err != nil || fs.NArg() != 1 || *n < 0 || *hold < 0 {
		return errUsage
	}
	url := fs.Arg(0)
	if !strings.Contains(url, "://") {
		url = "ws://" + url
	}
	d := websocket.Dialer{HandshakeTimeout: *timeout} // no Proxy: straight to the address, as an application would
	c, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("testapp ws: %s: status %d%s: %w", url, resp.StatusCode, proxyError(resp.Header), err)
		}
		return fmt.Errorf("testapp ws: %s: %w", url, err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(*timeout))
	_, hello, err := c.ReadMessage()
	if err != nil {
		return fmt.Errorf("testapp ws: the greeting: %w", err)
	}
	fmt.Fprintln(stdout, string(hello))
	pod := ""
	if f := strings.Fields(string(hello)); len(f) > 1 {
		pod = strings.TrimPrefix(f[1], "pod=")
	}
	for i := 1; i <= *n; i++ {
		msg := fmt.Sprintf("%s %d", *text, i)
		if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
			return fmt.Errorf("testapp ws: send %d: %w", i, err)
		}
		_, got, err := c.ReadMessage()
		if err != nil {
			return fmt.Errorf("testapp ws: echo %d: %w", i, err)
		}
		if want := pod + " " + msg; string(got) != want {
			return fmt.Errorf("testapp ws: echo %d: %q, want %q", i, got, want)
		}
	}
	fmt.Fprintf(stdout, "%d ok\n", *n)
	if *hold == 0 {
		bye := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
		if err := c.WriteControl(websocket.CloseMessage, bye, time.Now().Add(*timeout)); err != nil {
			return fmt.Errorf("testapp ws: close: %w", err)
		}
		_, _, err := c.ReadMessage()
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			return fmt.Errorf("testapp ws: the server's answer to the close: %w", err)
		}
		return nil
	}
	start := time.Now()
	_ = c.SetReadDeadline(start.Add(*hold))
	_, msg, err := c.ReadMessage()
	if err == nil {
		return fmt.Errorf("testapp ws: unexpected message while holding: %q", msg)
	}
	took := time.Since(start).Round(100 * time.Millisecond)
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code == websocket.CloseAbnormalClosure {
		return fmt.Errorf("testapp ws: connection lost without a close frame after %v: %w", took, err)
	}
	fmt.Fprintf(stdout, "closed by the server after %v: %d %s\n", took, ce.Code, ce.Text)
	if ce.Code != websocket.CloseNormalClosure && ce.Code != websocket.CloseGoingAway {
		return fmt.Errorf("testapp ws: closed with code %d", ce.Code)
	}
	return nil
}
