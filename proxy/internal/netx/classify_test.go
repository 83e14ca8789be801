package netx

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/proxy/metrics"
)

// closeCounts returns the tcp_close_total lines of the series labels
// (without braces), each as its class labels and value, sorted.
func closeCounts(t *testing.T, reg *metrics.Registry, labels string) string {
	t.Helper()
	var buf bytes.Buffer
	if _, err := reg.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if rest, ok := strings.CutPrefix(l, "tcp_close_total{"+labels); ok {
			got = append(got, strings.TrimPrefix(rest, ","))
		}
	}
	slices.Sort(got)
	return strings.Join(got, "; ")
}

const (
	successOnly = `classification="success"} 1`
	resetOnly   = `classification="failure",errno="ECONNRESET"} 1; classification="success"} 0`
	uncounted   = `classification="success"} 0` // opened, not closed yet
)

// A read that met a reset, and a write after it (see Info.Note).
var (
	errReset = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	errPipe  = &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
)

// TestInfoDoneClassifies: Done counts the connection by the first failure
// noted; the end of the stream, the proxy's own close and deadlines are no
// failure, and a failure is not overwritten, but for an EPIPE by the
// ECONNRESET of the same reset.
func TestInfoDoneClassifies(t *testing.T) {
	reset, pipe := errReset, errPipe
	timedOut := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ETIMEDOUT)}
	tests := []struct {
		name  string
		noted []error
		want  string
	}{
		{"nothing", nil, successOnly},
		{"EOF", []error{io.EOF}, successOnly},
		{"the proxy's close", []error{fmt.Errorf("read: %w", net.ErrClosed)}, successOnly},
		{"the proxy's deadline", []error{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}}, successOnly},
		{"reset", []error{reset}, resetOnly},
		{"reset after EOF", []error{io.EOF, reset}, resetOnly},
		{"the first failure stays", []error{reset, pipe, net.ErrClosed}, resetOnly},
		{"no errno", []error{errors.New("tls: bad record MAC")}, `classification="failure"} 1; classification="success"} 0`},
		{"EPIPE", []error{pipe, timedOut}, `classification="failure",errno="EPIPE"} 1; classification="success"} 0`},
		// The two directions raced for one reset: the write that lost
		// (EPIPE) was noted first.
		{"reset after EPIPE", []error{pipe, reset}, resetOnly},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := metrics.New()
			info := &Info{Stats: reg.Open(metrics.TCPKey{Direction: "inbound", Peer: "src"})}
			for _, err := range tt.noted {
				info.Note(err)
			}
			info.Done()
			info.Done()
			if got := closeCounts(t, reg, `direction="inbound",peer="src",tls="false"`); got != tt.want {
				t.Errorf("tcp_close_total %s, want %s", got, tt.want)
			}
		})
	}
}

// TestInfoDoneBeforeOpen: a Done before Open (crypto/tls closes the
// connection of a handshake that timed out, before the proxy opens its
// stats) leaves the connection to be counted by the Done after Open.
func TestInfoDoneBeforeOpen(t *testing.T) {
	reg := metrics.New()
	info := &Info{}
	info.Done()
	info.Open(reg, metrics.TCPKey{Direction: "inbound", Peer: "src", TLS: true})
	info.Done()
	if got := closeCounts(t, reg, `direction="inbound",peer="src",tls="true"`); got != successOnly {
		t.Errorf("tcp_close_total %s, want %s", got, successOnly)
	}
	var buf bytes.Buffer
	_, _ = reg.WriteTo(&buf)
	if want := `tcp_open_connections{direction="inbound",peer="src",tls="true"} 0`; !strings.Contains(buf.String(), want) {
		t.Errorf("no %s in\n%s", want, buf.String())
	}
}

// pipeServer is the dialed side's peer in TestPipeClassifies: the server
// end of its connection (TLS or not) and its TCP socket, to reset.
type pipeServer struct {
	rw  io.ReadWriter
	raw *net.TCPConn
}

func (s pipeServer) closeWrite() {
	if tc, ok := s.rw.(*tls.Conn); ok {
		_ = tc.CloseWrite()
	}
	_ = s.raw.CloseWrite()
}

// reset closes the socket with a RST (SO_LINGER 0).
func reset(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
}

// TestPipeClassifies: Pipe's copies note each side's failure on that side
// only (the accepted side's Info; the dialed side's Info, or the error it
// returns when the dialed side has none), with splice between plain
// sockets and the buffered copy through TLS; clean ends are successes.
func TestPipeClassifies(t *testing.T) {
	modes := []struct {
		name string
		// dial returns the dialed side as the proxies have it, its server
		// end, and whether its Info counts it (else the returned error does).
		dial func(t *testing.T, info *Info) (net.Conn, pipeServer)
	}{
		{"splice to a raw socket (inbound)", func(t *testing.T, _ *Info) (net.Conn, pipeServer) {
			b1, b2 := pair(t)
			return NewSysConn(b1), pipeServer{b2, b2.(*net.TCPConn)}
		}},
		{"to a dialed Conn (outbound, plain)", func(t *testing.T, info *Info) (net.Conn, pipeServer) {
			b1, b2 := pair(t)
			return &Owned{Conn: Wrap(b1, info), Info: info}, pipeServer{b2, b2.(*net.TCPConn)}
		}},
		{"to a dialed TLS Conn (outbound, mTLS)", func(t *testing.T, info *Info) (net.Conn, pipeServer) {
			tc, ts := tlsPair(t, info)
			return tc, pipeServer{ts, ts.NetConn().(*net.TCPConn)}
		}},
	}
	scenarios := []struct {
		name string
		// after a round trip (ping, pong), how each end goes away
		end          func(t *testing.T, client net.Conn, srv pipeServer)
		wantA, wantB string
	}{
		{"both close cleanly, the server answering the client's half-close", func(t *testing.T, client net.Conn, srv pipeServer) {
			_ = client.(*net.TCPConn).CloseWrite()
			if _, err := io.ReadAll(srv.rw); err != nil {
				t.Errorf("server: %v", err)
			}
			_, _ = io.WriteString(srv.rw, "bye")
			srv.closeWrite()
			if b, err := io.ReadAll(client); err != nil || string(b) != "bye" {
				t.Errorf("client read %q, %v after its half-close; want bye", b, err)
			}
		}, successOnly, successOnly},
		{"the server resets mid-stream", func(t *testing.T, client net.Conn, srv pipeServer) {
			reset(srv.raw)
			_, _ = io.ReadAll(client) // the proxy closes it
		}, successOnly, resetOnly},
		{"the client resets mid-stream", func(t *testing.T, client net.Conn, srv pipeServer) {
			reset(client)
			_, _ = io.ReadAll(srv.rw) // the proxy closes it
		}, resetOnly, successOnly},
	}
	for _, m := range modes {
		for _, sc := range scenarios {
			t.Run(m.name+"/"+sc.name, func(t *testing.T) {
				reg := metrics.New()
				srcKey := metrics.TCPKey{Direction: "outbound", Peer: "src"}
				dstKey := metrics.TCPKey{Direction: "outbound", Peer: "dst"}
				a1, a2 := pair(t)
				aInfo := &Info{Stats: reg.Open(srcKey)}
				bInfo := &Info{Stats: reg.Open(dstKey)}
				b, srv := m.dial(t, bInfo)
				_, rawB := b.(*SysConn)
				var bStats metrics.TCP
				if rawB {
					bInfo.Stats.Close() // not used: the returned error classifies b
					bInfo.Stats = metrics.TCP{}
					reg = metrics.New()
					aInfo.Stats = reg.Open(srcKey)
					bStats = reg.Open(dstKey)
				}
				done := make(chan error, 1)
				go func() {
					err := Pipe(Wrap(a2, aInfo), b, bStats)
					_ = b.Close()
					aInfo.Done()
					if rawB {
						bStats.CloseErr(err)
					}
					done <- err
				}()
				pingPong(t, a1, srv)
				sc.end(t, a1, srv)
				var err error
				select {
				case err = <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("Pipe did not return")
				}
				if got := closeCounts(t, reg, `direction="outbound",peer="src",tls="false"`); got != sc.wantA {
					t.Errorf("accepted side: tcp_close_total %s, want %s", got, sc.wantA)
				}
				if got := closeCounts(t, reg, `direction="outbound",peer="dst",tls="false"`); got != sc.wantB {
					t.Errorf("dialed side: tcp_close_total %s, want %s", got, sc.wantB)
				}
				if wantErr := sc.wantB != successOnly; (err != nil) != wantErr {
					t.Errorf("Pipe returned %v; want an error: %v", err, wantErr)
				}
			})
		}
	}
}

// TestInfoFail: a failed connect ends the connection as a failure, with
// its errno, even when Classify calls the error none (a connect timeout),
// and the first failure noted stays.
func TestInfoFail(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	for _, tt := range []struct {
		name   string
		before error
		err    error
		want   string
	}{
		{"refused", nil, fmt.Errorf("%w; %w", refused, errors.New("[::1]: cannot assign requested address")), `classification="failure",errno="ECONNREFUSED"} 1; classification="success"} 0`},
		{"timeout", nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.ErrDeadlineExceeded}, `classification="failure"} 1; classification="success"} 0`},
		{"after a reset", errReset, refused, resetOnly},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := metrics.New()
			info := &Info{Stats: reg.Open(metrics.TCPKey{Direction: "inbound", Peer: "src"})}
			info.Note(tt.before)
			info.Fail(tt.err)
			info.Done()
			if got := closeCounts(t, reg, `direction="inbound",peer="src",tls="false"`); got != tt.want {
				t.Errorf("tcp_close_total %s, want %s", got, tt.want)
			}
		})
	}
}

// TestPipeAbortingTLS: PipeAborting passes a clean end of its TLS side b
// on as Pipe does (the answer to a half-close arrives, both sides are
// successes), while b's reset, or its TCP connection ending without
// close_notify, resets the accepted side: its peer reads ECONNRESET, not
// EOF.
func TestPipeAbortingTLS(t *testing.T) {
	for _, sc := range []struct {
		name string
		// after a round trip (ping, pong), how the server goes; clean: the
		// client half-closes first and reads the server's answer
		end          func(srv pipeServer)
		clean        bool
		wantA, wantB string
	}{
		{"both close cleanly", func(srv pipeServer) {
			_, _ = io.ReadAll(srv.rw)
			_, _ = io.WriteString(srv.rw, "bye")
			srv.closeWrite()
		}, true, successOnly, successOnly},
		{"the server's proxy resets", func(srv pipeServer) { reset(srv.raw) }, false, successOnly, resetOnly},
		{"the TCP connection ends without close_notify", func(srv pipeServer) { _ = srv.raw.Close() }, false, successOnly, ""},
	} {
		t.Run(sc.name, func(t *testing.T) {
			reg := metrics.New()
			a1, a2 := pair(t)
			aInfo := &Info{Stats: reg.Open(metrics.TCPKey{Direction: "outbound", Peer: "src"})}
			bInfo := &Info{Stats: reg.Open(metrics.TCPKey{Direction: "outbound", Peer: "dst"})}
			tc, ts := tlsPair(t, bInfo)
			srv := pipeServer{ts, ts.NetConn().(*net.TCPConn)}
			done := make(chan struct{})
			go func() {
				PipeAborting(Wrap(a2, aInfo), tc)
				_ = tc.Close()
				aInfo.Done()
				close(done)
			}()
			pingPong(t, a1, srv)
			if sc.clean {
				_ = a1.(*net.TCPConn).CloseWrite()
			}
			sc.end(srv)
			b, err := io.ReadAll(a1)
			switch {
			case sc.clean && (err != nil || string(b) != "bye"):
				t.Errorf("client read %q, %v after its half-close; want bye", b, err)
			case !sc.clean && !errors.Is(err, syscall.ECONNRESET):
				t.Errorf("client read %q, %v; want ECONNRESET", b, err)
			}
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("PipeAborting did not return")
			}
			if got := closeCounts(t, reg, `direction="outbound",peer="src",tls="false"`); got != sc.wantA {
				t.Errorf("accepted side: tcp_close_total %s, want %s", got, sc.wantA)
			}
			if got := closeCounts(t, reg, `direction="outbound",peer="dst",tls="false"`); sc.wantB != "" && got != sc.wantB {
				t.Errorf("dialed side: tcp_close_total %s, want %s", got, sc.wantB)
			}
		})
	}
}

// pingPong has client send "ping" to srv and srv answer "pong", each read
// checked, within 10 s.
func pingPong(t *testing.T, client net.Conn, srv pipeServer) {
	t.Helper()
	_ = client.SetDeadline(time.Now().Add(10 * time.Second))
	_ = srv.raw.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(client, "ping"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(srv.rw, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("server read %q, %v", buf, err)
	}
	if _, err := io.WriteString(srv.rw, "pong"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
}

// TestOwnedCloseDuringPipe: an Owned closed while a Pipe copies it is
// counted when the Pipe ends, with what was noted until then; one closed
// after is counted by its close; each once.
func TestOwnedCloseDuringPipe(t *testing.T) {
	const labels = `direction="outbound",peer="dst",tls="false"`
	for _, tt := range []struct {
		name        string
		closeInPipe bool
	}{
		{"closed during the pipe", true},
		{"closed after the pipe", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			reg := metrics.New()
			info := &Info{Stats: reg.Open(metrics.TCPKey{Direction: "outbound", Peer: "dst"})}
			c1, _ := pair(t)
			o := &Owned{Conn: c1, Info: info}
			info.startPipe()
			info.Note(errPipe)
			if tt.closeInPipe {
				_ = o.Close()
				if got := closeCounts(t, reg, labels); got != uncounted {
					t.Errorf("counted while the pipe runs: %s", got)
				}
			}
			info.Note(errReset) // the other copy's, noted late
			info.endPipe()
			want := resetOnly // counted by the Pipe's end
			if !tt.closeInPipe {
				want = uncounted // left to the close
			}
			if got := closeCounts(t, reg, labels); got != want {
				t.Errorf("after the pipe: tcp_close_total %s, want %s", got, want)
			}
			_ = o.Close()
			_ = o.Close()
			info.Done()
			if got := closeCounts(t, reg, labels); got != resetOnly {
				t.Errorf("tcp_close_total %s, want %s", got, resetOnly)
			}
		})
	}
}
