package h2

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

const (
	// initialWindow is the protocol's default flow-control window.
	initialWindow = 65535
	// streamWindow and connWindow are the receive windows advertised.
	streamWindow = 4 << 20
	connWindow   = 16 << 20
	// maxFrame is the largest frame payload read (the protocol's default).
	maxFrame = 16384
	// maxHeaderList bounds a decoded header list (SETTINGS_MAX_HEADER_LIST_SIZE).
	maxHeaderList = 1 << 20
	// maxControl bounds the control frames queued while the connection
	// cannot be written; a peer exceeding it is not reading.
	maxControl = 4096
	bufSize    = 32 << 10
	// ackDelay bounds how long a PING's ACK waits for other frames to
	// ride with (see conn.acks), and ackBatch how many ACKs wait.
	ackDelay = 10 * time.Millisecond
	ackBatch = 16
	// goAwayTimeout bounds the wait to write the connection's last frames
	// (the GOAWAY of a connection error, or what a graceful close has
	// queued): for a writer holding wmu to finish and the frames to go
	// out to a peer that may not be reading.
	goAwayTimeout = time.Second
	// lingerTimeout bounds how long a connection that sent a connection
	// error's GOAWAY, and half-closed, reads what the peer still sends
	// before it closes (see closeLinger). Only time bounds it: a peer that
	// keeps sending would pass any byte limit at once, and be sent RST.
	lingerTimeout = time.Second
	// writeRefresh is how stale the write deadline may grow before a
	// write pushes it back (see deadlineWriter).
	writeRefresh = time.Second
)

// DefaultWriteTimeout bounds each write to a connection (one flush of the
// write buffer: at most bufSize plus a frame): a write that waits longer
// has found the peer's TCP window shut, and the connection is closed as
// dead, failing its streams. Whoever wrote is set free: a handler, the
// reader's control frames (which a pooled worker writes, see kickLater),
// or a Shutdown's GOAWAY.
//
// TCP gives no such bound: a peer that is alive but does not read answers
// the zero-window probes for ever, and one that vanished without a FIN is
// given up on only after some 15 minutes of retransmissions. Ten seconds
// rides out what a live peer may do: TCP's retransmission back-off after a
// burst of losses (200 ms doubling: five tries take 6.2 s), a CPU-throttled
// or garbage-collecting peer process, and the pauses of a peer that reads
// its socket only as its application consumes the body; every HTTP/2
// implementation the mesh meets (Conduit, Go, gRPC, Envoy, nghttp2) reads
// its socket whatever its streams do. It is also well within a SIGTERM
// drain's grace period.
//
// DATA gets the same bound. Flow control already stops us sending more
// than the peer's windows, but a peer whose windows exceed its socket
// buffers and which then stops reading would hold a stream's writer, and
// the connection's write lock, for ever; a peer that advertises window it
// does not drain for ten seconds is treated as dead like any other.
const DefaultWriteTimeout = 10 * time.Second

// deadlineWriter is the connection's writer below the write buffer: each
// write must end within timeout, or it fails and the connection is closed.
// The deadline is pushed back only when it is older than writeRefresh (a
// clock read per write, a system call per second at most), so a write has
// between timeout-writeRefresh and timeout. Once finish has set the
// connection's last deadline, writes no longer move it.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
	next    time.Time // under wmu: when the deadline is due to be pushed back

	mu    sync.Mutex // orders finish against a push
	final bool
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if now := time.Now(); !now.Before(w.next) {
		w.mu.Lock()
		if !w.final {
			_ = w.nc.SetWriteDeadline(now.Add(w.timeout))
		}
		w.mu.Unlock()
		w.next = now.Add(min(w.timeout/4, writeRefresh))
	}
	n, err := w.nc.Write(p)
	if err != nil {
		// Part of a frame may have gone: nothing can follow it. Closed,
		// the connection's reader fails too and ends every stream.
		_ = w.nc.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return n, fmt.Errorf("h2: write timed out, the peer is not reading: %w", err)
		}
		return n, fmt.Errorf("h2: write: %w", err)
	}
	return n, nil
}

// finish sets the deadline of the connection's last writes, d from now,
// which later writes keep.
func (w *deadlineWriter) finish(d time.Duration) {
	w.mu.Lock()
	w.final = true
	_ = w.nc.SetWriteDeadline(time.Now().Add(d))
	w.mu.Unlock()
}

var (
	errClosed = errors.New("h2: connection closed")
	errReset  = errors.New("h2: stream reset")
	// ErrRefused is a stream the server refused unprocessed (REFUSED_STREAM,
	// or above a GOAWAY's last stream).
	ErrRefused = errors.New("h2: stream refused unprocessed")
	// errRefusedReset is ErrRefused by RST_STREAM rather than GOAWAY: the
	// connection stays, and the server said no to this stream.
	errRefusedReset = fmt.Errorf("%w (RST_STREAM)", ErrRefused)
)

// conn is the part of a connection both ends share: a reader framer for
// the one reader goroutine, a writer framer behind wmu, flow control and
// the streams.
type conn struct {
	nc  net.Conn
	rfr *http2.Framer
	br  *bufio.Reader // rfr's reader
	hb  *hblock       // the reader's header block, reused
	// onClosed, set before the connection starts, learns of each stream
	// that ended both ways (called without c.mu).
	onClosed func(*stream)
	// encode writes one field with henc (bound once: a closure per header
	// block would be an allocation).
	encode func(name, value string)

	// Writing. A writer holds wmu; control frames (acknowledgements,
	// window updates, resets) are queued and written by whoever holds wmu
	// next, so the reader never blocks on a write.
	wmu      sync.Mutex
	dw       deadlineWriter // written through bw, under wmu
	bw       *bufio.Writer
	wfr      *http2.Framer
	henc     *hpack.Encoder
	hbuf     bytes.Buffer
	writers  atomic.Int32 // writers holding or waiting for wmu
	ctlMu    sync.Mutex
	ctl      []control
	ctlSpare []control // the other of ctl's two arrays, under wmu: queueing allocates nothing
	ctlN     atomic.Int32
	// acks are the payloads of PINGs received whose ACKs are held (under
	// ctlMu; ackN their number). Released into ctl (releaseAcks), they go
	// out after the next frames written on the connection, in the same
	// flush, or alone once ackDelay has passed (ackTimer). A peer's write
	// wakes the other end once; a PING's ACK written alone costs both ends
	// one more write and one more wake-up for no data. grpc-go sends a PING
	// (its bandwidth probe) on the first DATA it receives after the previous
	// probe's ACK; with the ACK after the next request's or response's DATA,
	// that DATA does not start a new probe, so a request/response peer sends
	// half as many.
	acks     [][8]byte
	ackN     atomic.Int32
	ackTimer *time.Timer // nil until the first PING
	werr     error       // under wmu
	// kicking: a pooled worker is on its way to write the control queue
	// (kickLater); kickFn is its function, bound once.
	kicking atomic.Bool
	kickFn  func()
	// linger: the connection sent a connection error's GOAWAY and
	// half-closed; its reader closes it after closeLinger, not fail.
	linger atomic.Bool
	// tableLimit is the peer's SETTINGS_HEADER_TABLE_SIZE not yet applied
	// to henc, or -1.
	tableLimit atomic.Int64

	// mu guards the rest.
	mu        sync.Mutex
	sendCond  sync.Cond // flow-control window grew, or the connection closed
	streams   map[uint32]*stream
	err       error         // set once the connection is finished
	sendConn  int64         // connection send window
	peerInit  int32         // peer's SETTINGS_INITIAL_WINDOW_SIZE
	peerFrame int           // peer's SETTINGS_MAX_FRAME_SIZE
	recvConn  int64         // connection receive window left to the peer
	ackConn   int64         // bytes consumed, not yet returned by WINDOW_UPDATE
	frames    atomic.Uint64 // HEADERS and DATA frames read, for the client's health check
	pingAcks  atomic.Uint64 // PING ACKs read, for the same
	ackFrames atomic.Uint64 // frames when the last PING ACK was read
	active    int           // open streams (client: slots taken)
	goingAway bool          // no new streams; close when the last ends
	idle      *time.Timer
	// sentGoAway: a GOAWAY was sent (or queued) naming goneAway as the
	// last stream (see goAwayLast).
	sentGoAway bool
	goneAway   uint32
}

// streamEnded counts a stream out and restarts the idle timer when it was
// the last; closing reports that the connection, going away, has no stream
// left.
func (c *conn) streamEnded(idleTimeout time.Duration) (closing bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.active--
	if c.active > 0 {
		return false
	}
	c.idle.Reset(idleTimeout)
	return c.goingAway
}

type controlKind uint8

const (
	ctlSettingsAck controlKind = iota
	ctlPingAck
	ctlWindow
	ctlReset
	ctlGoAway
)

type control struct {
	kind controlKind
	id   uint32
	val  uint32
	ping [8]byte
}

// init readies c to read from r (nc's, buffered: a *bufio.Reader is read
// as it is) and write to nc, each write bounded by writeTimeout (see
// DefaultWriteTimeout).
func (c *conn) init(nc net.Conn, r io.Reader, writeTimeout time.Duration) {
	c.nc = nc
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, bufSize)
	}
	c.br = br
	c.rfr = http2.NewFramer(nil, br)
	c.rfr.SetMaxReadFrameSize(maxFrame)
	c.hb = newHBlock()
	c.rfr.SetReuseFrames() // DATA is copied out before the next read
	c.dw = deadlineWriter{nc: nc, timeout: writeTimeout}
	c.bw = bufio.NewWriterSize(&c.dw, bufSize)
	c.kickFn = c.kickWorker
	c.wfr = http2.NewFramer(c.bw, nil)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.encode = c.encodeField
	c.tableLimit.Store(-1)
	c.sendCond.L = &c.mu
	c.streams = map[uint32]*stream{}
	c.sendConn = initialWindow
	c.peerInit = initialWindow
	c.peerFrame = maxFrame
	c.recvConn = connWindow
}

// stream is one request/response exchange's state, shared by both ends.
type stream struct {
	c  *conn
	id uint32

	// Under c.mu.
	rq       recvBuf      // received DATA not read yet
	rerr     error        // io.EOF after END_STREAM, or why the stream ended
	trailer  http.Header  // trailing HEADERS received
	rtrailer *http.Header // where the reader gets them, at EOF (made on demand)
	recvWin  int64        // receive window left to the peer
	ack      int64        // consumed, not yet returned
	// paid: of the unread data, the bytes whose connection window was
	// returned when the peer reset the stream (see peerReset); reading or
	// dropping them owes the connection nothing more.
	paid    int64
	grow    int64 // window to add to the next update
	sendOff int64 // the send window less the peer's SETTINGS_INITIAL_WINDOW_SIZE (see conn.sendWin)
	sentEnd bool  // END_STREAM or RST_STREAM sent
	recvEnd bool  // END_STREAM or RST_STREAM received
	reset   bool
	discard bool // the reader is gone: DATA is consumed on arrival
	gotHead bool
	final   bool // server: its final response is being written (under wmu)
	// narrow: a server stream's window stays the protocol's initial
	// 65,535 bytes until its handler first reads the body (it took the
	// request); read then adds grow to the next window update. Until then
	// a client can have sent no more of the body than that, so a request
	// refused unprocessed (REFUSED_STREAM, as the inbound proxy does when
	// the application cannot be reached) cost the client little to keep
	// and send elsewhere (see replayBody). A body that ends within the
	// initial window, the usual case, needs no update at all.
	// (With the flags above: one word for all.)
	narrow   bool
	readable chan struct{} // capacity 1: data, trailers or an error arrived
	want     int64         // the body's content-length, or -1
	got      int64         // DATA bytes received (padding excluded)

	// Set before the stream is shared.
	abort func()        // the peer reset the stream or the connection ended
	req   *http.Request // the request (a server's, for its handler)

	// Client.
	resp *http.Response // the response head, until roundTrip takes it
	head *http.Response // where onHeaders makes it (see clientStream)
	vals []string       // backing for its header values (see headerOf)
	body respBody       // the response body, in the stream's allocation
	stop func() bool    // stops the request context's AfterFunc; under c.mu
	actx *netx.AbortCtx // or the request's AbortCtx, which holds the stream; under c.mu
	kept *replayBody    // the body kept for a refusal, until the server widens the window; under c.mu

	// Server: the request's context when it is the stream's own (see
	// serverStream), canceled where abort is called; nil when abort
	// cancels it.
	sctx *netx.AbortCtx
}

// clientStream is a client's stream with its response head in the same
// allocation.
type clientStream struct {
	stream
	head http.Response
	vals [respVals]string
}

// How many header values a head keeps in its stream's allocation (see
// headerOf): most responses and requests have no more regular fields (a
// gRPC response content-type and one or two more, a request several more),
// and the values fill what the streams' size classes (480 and 1024 bytes)
// left over.
const (
	respVals = 4
	reqVals  = 11
)

// serverStream is a server's stream with what its request needs in the
// same allocation.
type serverStream struct {
	stream
	srv       *serverConn // the stream's connection, for its handler
	rbody     reqBody
	url       url.URL
	request   http.Request    // st.req, in the stream's allocation
	vals      [reqVals]string // the request's header values (see headerOf)
	ctx       netx.AbortCtx
	truncated bool // the request head was over the header list limit (answered 431)
}

// newStream returns a stream's initial state; its send window is the
// peer's SETTINGS_INITIAL_WINDOW_SIZE (sendOff 0).
func (c *conn) newStream(id uint32) *stream {
	s := &stream{}
	c.initStream(s, id)
	return s
}

func (c *conn) initStream(s *stream, id uint32) {
	*s = stream{c: c, id: id, recvWin: streamWindow, readable: make(chan struct{}, 1), want: -1}
}

// sendWin is s's send window; c.mu is held. A stream keeps it as an offset
// from the peer's SETTINGS_INITIAL_WINDOW_SIZE, so that a change of the
// setting moves every open stream's window at once: a pass over 1,000
// streams for each of the 2,730 times a SETTINGS frame can repeat the
// setting made the reader spin.
func (c *conn) sendWin(s *stream) int64 { return s.sendOff + int64(c.peerInit) }

func (s *stream) notify() {
	select {
	case s.readable <- struct{}{}:
	default:
	}
}

// queue adds a control frame, for the writer holding wmu to write, or a
// pooled worker when none does (kickLater): whoever queues never waits on
// the connection's writes, the reader above all. Written by the reader, an
// ACK or a WINDOW_UPDATE to a peer whose window is shut would stop it
// reading, and two such ends, each waiting for the other to read, would
// never move again; a Shutdown would stop at the first such connection.
func (c *conn) queue(ctl control) {
	c.ctlMu.Lock()
	if len(c.ctl) >= maxControl {
		c.ctlMu.Unlock()
		_ = c.nc.Close() // the peer is not reading: the reader fails and ends the streams
		return
	}
	c.ctl = append(c.ctl, ctl)
	c.ctlN.Store(int32(len(c.ctl)))
	c.ctlMu.Unlock()
	c.kickLater()
}

// kickLater has a pooled worker write the queued control frames, unless a
// writer holds or waits for wmu (it will write them) or a worker is on its
// way already.
func (c *conn) kickLater() {
	if c.ctlN.Load() > 0 && c.writers.Load() == 0 && !c.kicking.Swap(true) {
		pool.run(funcTask(c.kickFn))
	}
}

// kickWorker is kickLater's worker: what is queued after it starts finds
// kicking false, and its own worker if this one has done.
func (c *conn) kickWorker() {
	c.kicking.Store(false)
	c.kick()
}

// kick writes queued control frames if wmu is free; every writer calls it
// after releasing wmu, so none is left behind.
func (c *conn) kick() {
	for c.ctlN.Load() > 0 && c.writers.Load() == 0 && c.wmu.TryLock() {
		c.releaseAcks()
		c.writeControl()
		c.flush()
		c.wmu.Unlock()
	}
}

// ping queues the ACK of a PING, to be written with the next frames, after
// ackDelay, or at once when ackBatch are waiting (see acks).
func (c *conn) ping(data [8]byte) {
	c.ctlMu.Lock()
	if len(c.ctl)+len(c.acks) >= maxControl {
		c.ctlMu.Unlock()
		_ = c.nc.Close() // the peer is not reading: the reader fails and ends the streams
		return
	}
	c.acks = append(c.acks, data)
	n := len(c.acks)
	c.ackN.Store(int32(n))
	if n == 1 {
		if c.ackTimer == nil {
			c.ackTimer = time.AfterFunc(ackDelay, c.ackNow)
		} else {
			c.ackTimer.Reset(ackDelay)
		}
	}
	c.ctlMu.Unlock()
	if n >= ackBatch {
		c.ackNow()
	}
}

// ackNow sends the held ACKs as ordinary control frames: written by the
// writer holding wmu when it lets go, or a pooled worker (kickLater).
func (c *conn) ackNow() {
	c.releaseAcks()
	c.kickLater()
}

// releaseAcks moves the held ACKs to the control queue, behind what is
// there.
func (c *conn) releaseAcks() {
	if c.ackN.Load() == 0 {
		return
	}
	c.ctlMu.Lock()
	for _, d := range c.acks {
		c.ctl = append(c.ctl, control{kind: ctlPingAck, ping: d})
	}
	c.acks = c.acks[:0] // copied out: the array is reused
	c.ackN.Store(0)
	c.ctlN.Store(int32(len(c.ctl)))
	c.ackTimer.Stop()
	c.ctlMu.Unlock()
}

// writeControl writes the queued control frames; wmu is held.
func (c *conn) writeControl() {
	if c.ctlN.Load() == 0 {
		return
	}
	c.ctlMu.Lock()
	q := c.ctl
	c.ctl, c.ctlSpare = c.ctlSpare[:0], nil
	c.ctlN.Store(0)
	c.ctlMu.Unlock()
	for _, f := range q {
		if c.werr != nil {
			break
		}
		switch f.kind {
		case ctlSettingsAck:
			c.werr = c.wfr.WriteSettingsAck()
		case ctlPingAck:
			c.werr = c.wfr.WritePing(true, f.ping)
		case ctlWindow:
			c.werr = c.wfr.WriteWindowUpdate(f.id, f.val)
		case ctlReset:
			c.werr = c.wfr.WriteRSTStream(f.id, http2.ErrCode(f.val))
		case ctlGoAway:
			c.werr = c.wfr.WriteGoAway(f.id, http2.ErrCode(f.val), nil)
		}
	}
	c.ctlSpare = q
}

// lock takes wmu for a writer; unlock flushes unless another writer is
// waiting (it will flush both), then writes late control frames.
func (c *conn) lock() {
	c.writers.Add(1)
	c.wmu.Lock()
	c.writeControl()
}

func (c *conn) unlock() {
	if c.writers.Add(-1) == 0 {
		c.releaseAcks() // after the frames just written
		c.writeControl()
		c.flush()
	}
	c.wmu.Unlock()
	c.kick()
}

func (c *conn) flush() {
	if c.werr == nil && c.bw.Buffered() > 0 {
		c.werr = c.bw.Flush() // a failed write closes the connection (deadlineWriter)
	}
}

func (c *conn) encodeField(name, value string) {
	_ = c.henc.WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: sensitive(name)})
}

// writeHeaders encodes fields as a header block on id; wmu is held.
func (c *conn) writeHeaders(id uint32, end bool, fields func(enc func(name, value string))) error {
	if c.werr != nil {
		return c.werr
	}
	if v := c.tableLimit.Swap(-1); v >= 0 {
		c.henc.SetMaxDynamicTableSizeLimit(uint32(v))
	}
	c.hbuf.Reset()
	fields(c.encode)
	c.mu.Lock()
	max := c.peerFrame
	c.mu.Unlock()
	block := c.hbuf.Bytes()
	first := true
	for first || len(block) > 0 {
		frag := block
		if len(frag) > max {
			frag = frag[:max]
		}
		block = block[len(frag):]
		if first {
			c.werr = c.wfr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: frag, EndStream: end, EndHeaders: len(block) == 0})
			first = false
		} else {
			c.werr = c.wfr.WriteContinuation(id, len(block) == 0, frag)
		}
		if c.werr != nil {
			return c.werr
		}
	}
	return nil
}

// sensitive names the fields sent as never indexed (RFC 7541, 7.1):
// credentials, since one connection carries the requests of every
// application in the pod and a shared compression table could leak them.
func sensitive(name string) bool {
	switch name {
	case "authorization", "proxy-authorization", "cookie", "set-cookie":
		return true
	}
	return false
}

// reserve waits for send window for up to n bytes of DATA on s and takes
// it; it returns 0 and an error once the stream or connection ended.
func (c *conn) reserve(s *stream, n int) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for {
		if c.err != nil {
			return 0, c.err
		}
		if s.reset {
			return 0, errReset
		}
		avail := min(int64(n), c.sendConn, c.sendWin(s), int64(c.peerFrame))
		if avail > 0 {
			c.sendConn -= avail
			s.sendOff -= avail
			return int(avail), nil
		}
		c.sendCond.Wait()
	}
}

// writeData sends p as DATA frames on s within flow control, waiting for
// window as needed, with END_STREAM on the last when end; wmu is taken per
// frame, not held.
func (c *conn) writeData(s *stream, p []byte, end bool) error {
	if len(p) == 0 {
		if !end {
			return nil
		}
		c.lock()
		err := c.dataLocked(s, nil, true)
		c.unlock()
		return err
	}
	for len(p) > 0 {
		n, err := c.reserve(s, len(p))
		if err != nil {
			return err
		}
		c.lock()
		err = c.dataLocked(s, p[:n], end && n == len(p))
		c.unlock()
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

// dataLocked writes one DATA frame; wmu is held and the window reserved.
func (c *conn) dataLocked(s *stream, p []byte, end bool) error {
	if c.werr != nil {
		return c.werr
	}
	if end {
		c.mu.Lock()
		s.sentEnd = true
		c.mu.Unlock()
	}
	c.werr = c.wfr.WriteData(s.id, end, p)
	return c.werr
}

// tryReserve takes send window for all of n bytes on s if it is there now.
func (c *conn) tryReserve(s *stream, n int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil || s.reset || int64(n) > min(c.sendConn, c.sendWin(s)) || n > c.peerFrame {
		return false
	}
	c.sendConn -= int64(n)
	s.sendOff -= int64(n)
	return true
}

// resetStream ends s with RST_STREAM code (unless it has ended both ways)
// and wakes its reader and writer.
func (c *conn) resetStream(s *stream, code http2.ErrCode, why error) {
	c.mu.Lock()
	send := !s.sentEnd || !s.recvEnd
	s.reset = true
	s.sentEnd = true
	s.endRecv(why)
	wc := c.returnConn() // the unread DATA endRecv dropped
	done := c.maybeClose(s)
	c.mu.Unlock()
	if send {
		c.queue(control{kind: ctlReset, id: s.id, val: uint32(code)})
	}
	c.sendWindow(0, 0, wc)
	c.sendCond.Broadcast()
	c.closed(done)
}

// dropRbuf forgets the stream's unread data and returns its buffers to
// their pools; DATA that still arrives takes others. c.mu is held.
func (s *stream) dropRbuf() { s.rq.drop() }

// endRecv ends the receive half with err (io.EOF for END_STREAM); data not
// read yet stays readable only after a clean end (and after the peer's
// reset: peerReset). c.mu is held.
func (s *stream) endRecv(err error) { s.finishRecv(err, false) }

// peerReset ends the receive half after the peer's RST_STREAM with err.
// What the peer sent before it stays readable, then err, as net/http's
// client and server deliver it: a response cut short reaches the reader
// with every byte sent, however soon the reset followed. Its connection
// window is returned now (the caller sends the update due: returnConn), so
// a reader that is slow or never comes holds no flow control. c.mu is
// held.
func (s *stream) peerReset(err error) { s.finishRecv(err, true) }

func (s *stream) finishRecv(err error, reset bool) {
	if s.recvEnd && s.rerr != nil {
		return
	}
	s.recvEnd = true
	if s.rerr == nil {
		s.rerr = err
	}
	switch {
	case reset:
		s.c.ackConn += int64(s.rq.n) - s.paid
		s.paid = int64(s.rq.n)
	case err != io.EOF:
		// Unread data is dropped: return it to the connection window
		// (the caller sends the update due: returnConn).
		s.dropUnread()
	}
	s.notify()
}

// dropUnread drops the unread data and counts it consumed on the
// connection (the caller sends the update due: returnConn). c.mu is held.
func (s *stream) dropUnread() {
	s.c.ackConn += int64(s.rq.n) - s.paid
	s.paid = 0
	s.dropRbuf()
}

// maybeClose removes s once both halves ended and returns it, for the
// caller to pass to closed once c.mu is released; else nil. c.mu is held.
func (c *conn) maybeClose(s *stream) *stream {
	if !s.sentEnd || !s.recvEnd {
		return nil
	}
	if _, ok := c.streams[s.id]; !ok {
		return nil
	}
	delete(c.streams, s.id)
	return s
}

// closed tells the connection's side that s ended both ways, if s is not
// nil; c.mu is not held.
func (c *conn) closed(s *stream) {
	if s != nil && c.onClosed != nil {
		c.onClosed(s)
	}
}

// read is the body reader of s: it returns received DATA and, at the end,
// io.EOF (with the last data) or the error that ended the stream.
func (s *stream) read(p []byte) (int, error) {
	c := s.c
	for {
		c.mu.Lock()
		if s.narrow {
			s.narrow, s.grow = false, streamWindow-initialWindow
		}
		if s.rq.n > 0 {
			n := s.rq.read(p)
			var err error
			if s.rq.n == 0 && s.rerr == io.EOF {
				err = io.EOF
				s.giveTrailer()
				s.dropRbuf()
			}
			owed := int64(n)
			if s.paid > 0 {
				k := min(owed, s.paid)
				s.paid -= k
				owed -= k
			}
			ws, wc := c.consumed(s, int(owed))
			c.mu.Unlock()
			c.sendWindow(s.id, ws, wc)
			return n, err
		}
		if s.rerr != nil {
			err := s.rerr
			if err == io.EOF {
				s.giveTrailer()
			}
			s.dropRbuf()
			c.mu.Unlock()
			return 0, err
		}
		c.mu.Unlock()
		<-s.readable
	}
}

// giveTrailer moves received trailers to the reader's Trailer map; it
// runs in the reader's goroutine at EOF, as net/http's do, so the map is
// never written while its owner reads it. c.mu is held.
func (s *stream) giveTrailer() {
	if s.trailer == nil || s.rtrailer == nil {
		return
	}
	if *s.rtrailer == nil {
		*s.rtrailer = make(http.Header, len(s.trailer))
	}
	for k, vs := range s.trailer {
		(*s.rtrailer)[k] = vs
	}
	s.trailer = nil
}

// consumed accounts n bytes read from s and returns the window updates
// due; c.mu is held. Updates are batched to a quarter of each window.
func (c *conn) consumed(s *stream, n int) (ws, wc uint32) {
	c.ackConn += int64(n)
	if c.ackConn >= connWindow/4 {
		wc = uint32(c.ackConn)
		c.recvConn += c.ackConn
		c.ackConn = 0
	}
	if !s.recvEnd {
		s.ack += int64(n)
		due := int64(streamWindow / 4)
		if s.narrow || s.grow > 0 {
			due = initialWindow / 4
		}
		if s.ack >= due {
			ws = uint32(s.ack + s.grow)
			s.recvWin += s.ack + s.grow
			s.ack, s.grow = 0, 0
		}
	}
	return ws, wc
}

func (c *conn) sendWindow(id, ws, wc uint32) {
	if wc > 0 {
		c.queue(control{kind: ctlWindow, id: 0, val: wc})
	}
	if ws > 0 {
		c.queue(control{kind: ctlWindow, id: id, val: ws})
	}
}

// closeRead stops reading s. With cancel an unfinished stream is reset
// (a client dropping a response); otherwise DATA still arriving is
// consumed and returned to the peer at once (a server done with a request
// body before its response is).
func (s *stream) closeRead(cancel bool) {
	c := s.c
	c.mu.Lock()
	open := !s.recvEnd || !s.sentEnd
	if !cancel || !open {
		s.discard = true
		s.ack += int64(s.rq.n)
		s.dropUnread()
		ws, wc := c.consumed(s, 0)
		c.mu.Unlock()
		c.sendWindow(s.id, ws, wc)
		return
	}
	c.mu.Unlock()
	c.resetStream(s, http2.ErrCodeCancel, errReset)
}

// endSend records that END_STREAM was written on s.
func (c *conn) endSend(s *stream) {
	c.mu.Lock()
	s.sentEnd = true
	done := c.maybeClose(s)
	c.mu.Unlock()
	c.closed(done)
}

// onData handles a DATA frame: flow control, then the payload for the
// stream's reader. It returns a connection error only.
func (c *conn) onData(f *http2.DataFrame, sd side) error {
	n := int64(f.Length)
	c.mu.Lock()
	if n > c.recvConn {
		c.mu.Unlock()
		return http2.ConnectionError(http2.ErrCodeFlowControl)
	}
	c.recvConn -= n
	s := c.streams[f.StreamID]
	if s == nil && sd.idleStream(f.StreamID) {
		// A stream that was never opened: DATA on it is a connection
		// error (RFC 9113 5.1, 6.1), not a closed stream's late frame.
		c.mu.Unlock()
		return idleError("DATA", f.StreamID)
	}
	if s == nil || s.recvEnd {
		// A stream we reset or finished: the bytes still count on the
		// connection, and go back at once.
		c.ackConn += n
		wc := c.returnConn()
		c.mu.Unlock()
		c.sendWindow(0, 0, wc)
		if s != nil && !s.reset {
			c.resetStream(s, http2.ErrCodeStreamClosed, errReset)
		}
		return nil
	}
	if n > s.recvWin {
		c.ackConn += n // the frame is dropped, but counts on the connection (RFC 9113 6.9)
		c.mu.Unlock()
		c.resetStream(s, http2.ErrCodeFlowControl, fmt.Errorf("h2: peer exceeded the stream window"))
		return nil
	}
	s.recvWin -= n
	data := f.Data()
	s.got += int64(len(data))
	if err := s.checkLength(f.StreamEnded()); err != nil {
		c.ackConn += n
		c.mu.Unlock()
		c.resetStream(s, http2.ErrCodeProtocol, err)
		return nil
	}
	if s.discard {
		c.ackConn += n
		s.ack += n
	} else {
		c.ackConn += n - int64(len(data)) // padding is consumed at once
		s.ack += n - int64(len(data))
		s.rq.write(data)
	}
	var done *stream
	if f.StreamEnded() {
		s.endRecv(io.EOF)
		done = c.maybeClose(s)
	} else if len(data) > 0 {
		s.notify()
	}
	ws, wc := c.consumed(s, 0)
	c.mu.Unlock()
	c.sendWindow(s.id, ws, wc)
	c.closed(done)
	return nil
}

// checkLength holds the body to its content-length (RFC 9113, 8.1.1): a
// body that ran past it, or ended short of it, is malformed; passed on, it
// would desync an HTTP/1.1 connection framed by that length. c.mu is held.
func (s *stream) checkLength(end bool) error {
	switch {
	case s.want < 0:
		return nil
	case s.got > s.want:
		return fmt.Errorf("h2: body longer than its content-length %d", s.want)
	case end && s.got != s.want:
		return fmt.Errorf("h2: body of %d bytes ended short of its content-length %d", s.got, s.want)
	}
	return nil
}

// returnConn returns the connection window update due; c.mu is held.
func (c *conn) returnConn() uint32 {
	if c.ackConn < connWindow/4 {
		return 0
	}
	wc := uint32(c.ackConn)
	c.recvConn += c.ackConn
	c.ackConn = 0
	return wc
}

// onSettings applies the peer's settings and acknowledges them.
func (c *conn) onSettings(f *http2.SettingsFrame, apply func(http2.Setting)) error {
	if f.IsAck() {
		return nil
	}
	var err error
	// The last value of a setting the frame repeats is the one that holds
	// (RFC 9113 6.5.3).
	table := int64(-1)
	c.mu.Lock()
	init := c.peerInit
	_ = f.ForeachSetting(func(st http2.Setting) error {
		if e := st.Valid(); e != nil {
			err = e
			return e
		}
		switch st.ID {
		case http2.SettingInitialWindowSize:
			c.peerInit = int32(st.Val) // every open stream's window moves with it (sendWin)
		case http2.SettingHeaderTableSize:
			table = int64(st.Val)
		case http2.SettingMaxFrameSize:
			c.peerFrame = int(st.Val)
		}
		if apply != nil {
			apply(st)
		}
		return nil
	})
	if err == nil && c.peerInit > init {
		// A stream given more window than it used may now have more than
		// the protocol allows (RFC 9113 6.9.2): one pass per frame, not
		// per repeat of the setting.
		for _, s := range c.streams {
			if w := c.sendWin(s); w > 1<<31-1 {
				err = fmt.Errorf("h2: SETTINGS_INITIAL_WINDOW_SIZE %d takes stream %d's send window to %d: %w",
					c.peerInit, s.id, w, http2.ConnectionError(http2.ErrCodeFlowControl))
				break
			}
		}
	}
	c.mu.Unlock()
	if err != nil {
		return err
	}
	if table >= 0 {
		c.tableLimit.Store(table) // applied by the next header writer
	}
	c.sendCond.Broadcast()
	c.queue(control{kind: ctlSettingsAck})
	return nil
}

// onWindowUpdate grows a send window.
func (c *conn) onWindowUpdate(f *http2.WindowUpdateFrame, sd side) error {
	var kept *replayBody
	c.mu.Lock()
	if c.isIdle(sd, f.StreamID) {
		// Not a closed stream's late WINDOW_UPDATE, which is ignored
		// (RFC 9113 6.9): a stream never opened (5.1).
		c.mu.Unlock()
		return idleError("WINDOW_UPDATE", f.StreamID)
	}
	if f.StreamID == 0 {
		c.sendConn += int64(f.Increment)
		if c.sendConn > 1<<31-1 {
			c.mu.Unlock()
			return http2.ConnectionError(http2.ErrCodeFlowControl)
		}
	} else if s := c.streams[f.StreamID]; s != nil {
		s.sendOff += int64(f.Increment)
		if c.sendWin(s) > 1<<31-1 {
			c.mu.Unlock()
			c.resetStream(s, http2.ErrCodeFlowControl, fmt.Errorf("h2: peer overflowed the stream window"))
			return nil
		}
		// The server read the body: it took the request (stream.narrow), so
		// the client need not keep the body any longer.
		kept, s.kept = s.kept, nil
	}
	c.mu.Unlock()
	c.sendCond.Broadcast()
	if kept != nil {
		kept.commit()
	}
	return nil
}

// onReset ends a stream the peer reset. It returns a connection error
// only.
func (c *conn) onReset(f *http2.RSTStreamFrame, sd side) error {
	c.mu.Lock()
	s := c.streams[f.StreamID]
	if s == nil {
		idle := sd.idleStream(f.StreamID)
		c.mu.Unlock()
		if idle {
			// RST_STREAM on a stream never opened is a connection error
			// (RFC 9113 5.1, 6.4); on a closed one, a late frame to ignore.
			return idleError("RST_STREAM", f.StreamID)
		}
		return nil
	}
	c.mu.Unlock()
	err := error(errReset)
	if f.ErrCode == http2.ErrCodeRefusedStream {
		err = errRefusedReset
	} else if f.ErrCode != http2.ErrCodeNo && f.ErrCode != http2.ErrCodeCancel {
		err = fmt.Errorf("%w by peer: %v", errReset, f.ErrCode)
	}
	c.mu.Lock()
	s.reset = true
	s.sentEnd = true // no RST in answer to RST
	if f.ErrCode == http2.ErrCodeNo && s.recvEnd {
		// A server's "stop sending": the response is complete.
		err = io.EOF
	}
	s.peerReset(err)
	wc := c.returnConn() // the unread DATA, paid for at once
	done := c.maybeClose(s)
	c.mu.Unlock()
	c.sendWindow(0, 0, wc)
	c.sendCond.Broadcast()
	if s.abort != nil {
		s.abort()
	}
	if s.sctx != nil {
		s.sctx.Cancel(nil)
	}
	c.closed(done)
	return nil
}

// fail ends the connection and every stream with err.
func (c *conn) fail(err error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = err
	var aborts []func()
	var ctxs []*netx.AbortCtx
	var ended []*stream
	for _, s := range c.streams {
		s.reset = true
		s.sentEnd = true
		s.endRecv(err)
		if s.abort != nil {
			aborts = append(aborts, s.abort)
		}
		if s.sctx != nil {
			ctxs = append(ctxs, s.sctx)
		}
		if d := c.maybeClose(s); d != nil {
			ended = append(ended, d)
		}
	}
	c.mu.Unlock()
	c.sendCond.Broadcast()
	if !c.linger.Load() {
		_ = c.nc.Close()
	}
	c.ctlMu.Lock()
	if c.ackTimer != nil {
		c.ackTimer.Stop() // the ACKs waiting have nowhere to go
	}
	c.ctlMu.Unlock()
	for _, f := range aborts {
		f()
	}
	for _, a := range ctxs {
		a.Cancel(nil)
	}
	for _, s := range ended {
		c.closed(s)
	}
}

// side is what the two ends' reader loops do differently.
type side interface {
	// onHeaders takes a header block: a request, a response or trailers.
	onHeaders(*hblock) error
	onGoAway(*http2.GoAwayFrame)
	// setting applies one of the peer's settings; c.mu is held.
	setting(http2.Setting)
	// lastStream is what our GOAWAY names: the highest stream the peer
	// opened (0 on a client).
	lastStream() uint32
	// sawStream notes a stream the peer opened with a frame rejected as a
	// stream error.
	sawStream(id uint32)
	// idleStream reports a stream in the idle state (RFC 9113 5.1): neither
	// end has opened it yet. c.mu is held.
	idleStream(id uint32) bool
}

// isIdle reports whether id names a stream in the idle state (RFC 9113
// 5.1): one that neither end has opened. c.mu is held.
func (c *conn) isIdle(sd side, id uint32) bool {
	return id != 0 && c.streams[id] == nil && sd.idleStream(id)
}

// idleError is the connection error of a frame of type what on stream id,
// which is idle (RFC 9113 5.1).
func idleError(what string, id uint32) error {
	return fmt.Errorf("h2: %s on idle stream %d: %w", what, id, http2.ConnectionError(http2.ErrCodeProtocol))
}

// readFrames is both ends' reader loop. It handles what the ends do
// alike, passes the rest to sd, and returns the error that ended the
// connection; a connection error has been answered with GOAWAY.
func (c *conn) readFrames(sd side) error {
	first := true
	for {
		fh, err := c.rfr.ReadFrameHeader()
		if err == nil && !first && fh.Type == http2.FrameHeaders {
			if h, ok := c.peekHeaders(fh); ok {
				// Decoded in place in the read buffer, without a frame
				// of x/net's: one allocation less per block.
				c.frames.Add(1)
				b, err := c.readBlock(h)
				if _, derr := c.br.Discard(int(fh.Length)); derr != nil && err == nil {
					err = derr
				}
				if err == nil {
					err = sd.onHeaders(b)
				} else if se, ok := asStreamError(err); ok {
					sd.sawStream(se.StreamID)
					c.streamError(se.StreamID, se.Code, err)
					err = nil
				}
				if err != nil {
					return c.connError(sd, err)
				}
				continue
			}
		}
		var f http2.Frame
		if err == nil {
			f, err = c.rfr.ReadFrameForHeader(fh)
		}
		if err != nil {
			if se, ok := asStreamError(err); ok {
				if fh.Type == http2.FrameHeaders {
					// The framer rejected a HEADERS frame (padding longer
					// than the frame) before its header block was decoded:
					// HPACK is out of step with the peer's, and RFC 9113
					// 6.2 makes it a connection error.
					return c.connError(sd, fmt.Errorf("h2: %w: %w", err, http2.ConnectionError(http2.ErrCodeProtocol)))
				}
				c.mu.Lock()
				idle := c.isIdle(sd, se.StreamID)
				c.mu.Unlock()
				if idle {
					// Such as a WINDOW_UPDATE of 0: on a stream never
					// opened, any frame but HEADERS and PRIORITY is a
					// connection error (RFC 9113 5.1), and RST_STREAM
					// may not be sent on it.
					return c.connError(sd, idleError(fh.Type.String(), se.StreamID))
				}
				c.streamError(se.StreamID, se.Code, err)
				continue
			}
			return c.connError(sd, err)
		}
		if first {
			if sf, ok := f.(*http2.SettingsFrame); !ok || sf.IsAck() {
				return c.connError(sd, fmt.Errorf("h2: the peer did not start with SETTINGS: %w", http2.ConnectionError(http2.ErrCodeProtocol)))
			}
			first = false
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			c.frames.Add(1)
			var b *hblock
			if b, err = c.readBlock(headersOf(f)); err == nil {
				err = sd.onHeaders(b)
			} else if se, ok := asStreamError(err); ok {
				sd.sawStream(se.StreamID)
				c.streamError(se.StreamID, se.Code, err)
				err = nil
			}
		case *http2.DataFrame:
			c.frames.Add(1)
			err = c.onData(f, sd)
		case *http2.SettingsFrame:
			err = c.onSettings(f, sd.setting)
		case *http2.WindowUpdateFrame:
			err = c.onWindowUpdate(f, sd)
		case *http2.PingFrame:
			if !f.IsAck() {
				c.ping(f.Data)
			} else {
				c.ackFrames.Store(c.frames.Load())
				c.pingAcks.Add(1)
			}
		case *http2.RSTStreamFrame:
			err = c.onReset(f, sd)
		case *http2.PriorityFrame:
			// Ignored (RFC 9113 5.3.2), on any stream: PRIORITY may name
			// an idle one, which it leaves idle (5.1). Only naming its own
			// stream as the dependency is an error, of that stream
			// (5.3.1), whatever its state.
			if f.StreamDep == f.StreamID {
				c.streamError(f.StreamID, http2.ErrCodeProtocol, errSelfDependency)
			}
		case *http2.GoAwayFrame:
			sd.onGoAway(f)
		case *http2.PushPromiseFrame:
			err = http2.ConnectionError(http2.ErrCodeProtocol) // neither end enables push
		}
		if err != nil {
			return c.connError(sd, err)
		}
	}
}

// asStreamError returns the stream error err is, if it is one (a function
// of its own, so that the target escapes only when there is an error).
func asStreamError(err error) (http2.StreamError, bool) {
	var se http2.StreamError
	ok := errors.As(err, &se)
	return se, ok
}

// connError answers a connection error with GOAWAY and returns it.
func (c *conn) connError(sd side, err error) error {
	if errors.Is(err, http2.ErrFrameTooLarge) {
		// Its payload is not read: the connection cannot go on (RFC 9113 4.2).
		err = fmt.Errorf("%w: %w", err, http2.ConnectionError(http2.ErrCodeFrameSize))
	}
	var ce http2.ConnectionError
	if errors.As(err, &ce) {
		c.goAwayError(sd.lastStream(), http2.ErrCode(ce), err)
	}
	return err
}

// streamError resets the stream of a frame rejected as a stream error: an
// open one ends for its reader and writer too.
func (c *conn) streamError(id uint32, code http2.ErrCode, err error) {
	c.mu.Lock()
	s := c.streams[id]
	c.mu.Unlock()
	if s != nil {
		c.resetStream(s, code, err)
		return
	}
	c.queue(control{kind: ctlReset, id: id, val: uint32(code)})
}

// goAway queues a graceful GOAWAY (NO_ERROR): streams up to last go on.
func (c *conn) goAway(last uint32) {
	c.queue(control{kind: ctlGoAway, id: c.goAwayLast(last), val: uint32(http2.ErrCodeNo)})
}

// goAwayLast returns the last stream a GOAWAY may name: last, or less if
// an earlier GOAWAY named less. A peer may have sent the streams above an
// earlier GOAWAY's elsewhere already, so the number never grows (RFC 9113
// 6.8).
func (c *conn) goAwayLast(last uint32) uint32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sentGoAway {
		last = min(last, c.goneAway)
	}
	c.sentGoAway, c.goneAway = true, last
	return last
}

// maxDebug bounds the debug data of a connection error's GOAWAY.
const maxDebug = 256

// goAwayError writes GOAWAY with a connection error's code, and its text as
// debug data, and flushes it; nothing is written on the connection after
// it, which is about to close. It is written here, not queued: queued, it
// would wait for a writer holding wmu (a response blocked on a peer slow
// to read), and the connection closed under it would lose it, leaving the
// peer a bare EOF where GOAWAY would tell it which requests were not
// processed and why. A write deadline bounds the wait: a peer that does not
// read fails the writer holding wmu, and the GOAWAY, within goAwayTimeout.
func (c *conn) goAwayError(last uint32, code http2.ErrCode, err error) {
	last = c.goAwayLast(last)
	debug := err.Error()
	if len(debug) > maxDebug {
		debug = debug[:maxDebug]
	}
	c.lockFinal()
	if c.werr == nil {
		c.werr = c.wfr.WriteGoAway(last, code, []byte(debug))
	}
	c.flush()
	if c.werr == nil {
		c.werr = fmt.Errorf("h2: connection error sent: %w", err)
		c.halfClose()
	}
	c.unlockFinal()
}

// halfClose ends what we send after a connection error's GOAWAY (a FIN
// behind it, or TLS's close_notify) and has the reader linger before it
// closes (closeLinger); wmu is held. Closed at once with the peer's frames
// unread in its receive buffer, the socket would send RST instead of FIN,
// and the peer's end would throw away what it had not read yet, and ours
// what it had not sent yet: the GOAWAY, left to wait behind DATA for the
// peer's window, would be lost, and the peer see only ECONNRESET.
func (c *conn) halfClose() {
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.linger.Store(true)
}

// closeLinger closes the connection once its reader is done with it (the
// reader's goroutine calls it after fail). After a connection error's
// GOAWAY it first reads and drops what the peer still sends, until the
// peer closes its end (it read the GOAWAY and our FIN) or lingerTimeout,
// so that the close finds nothing unread (see halfClose).
func (c *conn) closeLinger() {
	if c.linger.Load() {
		_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, c.nc)
	}
	_ = c.nc.Close()
}

// lockFinal takes wmu for the connection's last frames, with a write
// deadline of goAwayTimeout (see goAwayError), and writes what is queued;
// unlockFinal releases it. Unlike unlock, whoever holds wmu flushes
// before letting go, whether or not another writer is waiting.
func (c *conn) lockFinal() {
	c.dw.finish(goAwayTimeout)
	c.writers.Add(1)
	c.wmu.Lock()
	c.releaseAcks()
	c.writeControl()
}

func (c *conn) unlockFinal() {
	c.flush()
	c.writers.Add(-1)
	c.wmu.Unlock()
}

// headerOf builds an http.Header from a header block's regular fields:
// cookies are joined as RFC 9113 8.2.3 asks for HTTP/1. A connection-specific
// field or a bad content-length is an error. The values are kept in vals
// (the stream's, which the header then holds) when they fit.
func headerOf(fields []hpack.HeaderField, vals []string) (http.Header, int64, error) {
	n := 0
	for _, f := range fields {
		if !strings.HasPrefix(f.Name, ":") {
			n++
		}
	}
	h := make(http.Header, n)
	// One backing array for the values: a field's first value takes a
	// one-element slice of it instead of an allocation of its own.
	if n > len(vals) {
		vals = make([]string, n)
	}
	cl := int64(-1)
	var cookies []string
	i := -1
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			continue
		}
		i++
		if connectionSpecific(f.Name) {
			return nil, 0, fmt.Errorf("h2: connection-specific header %q", f.Name)
		}
		switch f.Name {
		case "te":
			if f.Value != "trailers" {
				return nil, 0, fmt.Errorf("h2: te: %q", f.Value)
			}
		case "cookie":
			cookies = append(cookies, f.Value)
			continue
		case "content-length":
			n, err := strconv.ParseUint(f.Value, 10, 63) // digits only: no sign (RFC 9110 8.6)
			if err != nil || (cl >= 0 && int64(n) != cl) {
				return nil, 0, fmt.Errorf("h2: bad content-length %q", f.Value)
			}
			cl = int64(n)
		}
		k := canonical(f.Name)
		if vs, ok := h[k]; ok {
			h[k] = append(vs, f.Value)
		} else {
			vals[i] = f.Value
			h[k] = vals[i : i+1 : i+1]
		}
	}
	if len(cookies) > 0 {
		h["Cookie"] = []string{strings.Join(cookies, "; ")}
	}
	return h, cl, nil
}

// connectionSpecific reports the fields RFC 9113 8.2.2 forbids in any
// field section of a message.
func connectionSpecific(name string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}

// trailerOf fills dst with a trailing header block; pseudo-fields and
// connection-specific fields are an error (a trailer section sent on in
// HTTP/1.1 chunked coding would carry them verbatim).
func trailerOf(dst http.Header, fields []hpack.HeaderField) error {
	for _, f := range fields {
		if strings.HasPrefix(f.Name, ":") {
			return fmt.Errorf("h2: pseudo-header %q in trailers", f.Name)
		}
		if connectionSpecific(f.Name) {
			return fmt.Errorf("h2: connection-specific header %q in trailers", f.Name)
		}
		k := canonical(f.Name)
		dst[k] = append(dst[k], f.Value)
	}
	return nil
}

// onTrailers ends s's receiving side with its trailing header block, or
// resets s when the block or the body's length is wrong. c.mu is held and
// released.
func (c *conn) onTrailers(s *stream, fields []hpack.HeaderField) {
	s.trailer = http.Header{}
	err := trailerOf(s.trailer, fields)
	if err == nil {
		err = s.checkLength(true)
	}
	if err != nil {
		c.mu.Unlock()
		c.resetStream(s, http2.ErrCodeProtocol, err)
		return
	}
	s.endRecv(io.EOF)
	done := c.maybeClose(s)
	c.mu.Unlock()
	c.closed(done)
}

// declaredTrailer returns the trailer keys a Trailer header announces.
func declaredTrailer(h http.Header) http.Header {
	vs := h["Trailer"]
	if len(vs) == 0 {
		return nil
	}
	t := http.Header{}
	for _, v := range vs {
		for k := range strings.SplitSeq(v, ",") {
			if k = strings.TrimSpace(k); k != "" {
				t[canonical(k)] = nil
			}
		}
	}
	return t
}

var common = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"accept", "accept-encoding", "accept-language", "authorization", "cache-control",
		"content-encoding", "content-length", "content-type", "cookie", "date", "etag", "grpc-encoding",
		"grpc-accept-encoding", "grpc-message", "grpc-status", "grpc-timeout", "host", "if-modified-since",
		"if-none-match", "last-modified", "location", "server", "set-cookie", "te", "trailer", "user-agent",
		"vary", "via", "x-forwarded-for", "x-request-id", "conduit-client-id", "conduit-orig-proto",
		"conduit-proxy-error", "traceparent", "tracestate"} {
		m[k] = http.CanonicalHeaderKey(k)
	}
	return m
}()

func canonical(name string) string {
	if k, ok := common[name]; ok {
		return k
	}
	return http.CanonicalHeaderKey(name)
}

// skipHeader reports header fields not sent on HTTP/2.
func skipHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Host":
		return true
	}
	return false
}

// lower returns the wire name of a header key.
func lower(k string) string {
	for i := 0; i < len(k); i++ {
		if c := k[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// encodeHeader writes h's fields, lowercased, skipping connection-specific
// ones, those a Connection field names (RFC 9110 7.6.1: a response from
// net/http's HTTP/1.1 transport has them still), and a te other than
// "trailers".
func encodeHeader(h http.Header, enc func(name, value string)) {
	conn := h["Connection"]
	for k, vs := range h {
		if skipHeader(k) || (conn != nil && namedIn(conn, k)) {
			continue
		}
		name := lowerCommon(k)
		if name == "te" {
			for _, v := range vs {
				if strings.EqualFold(v, "trailers") {
					enc("te", "trailers")
				}
			}
			continue
		}
		for _, v := range vs {
			if v == "" && name == "user-agent" {
				continue // net/http's "send none" (netx.NoDefaultUserAgent)
			}
			enc(name, v)
		}
	}
}

// namedIn reports whether the Connection field values conn name k.
func namedIn(conn []string, k string) bool {
	for _, v := range conn {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), k) {
				return true
			}
		}
	}
	return false
}

var lowerOf = func() map[string]string {
	m := map[string]string{}
	for l, k := range common {
		m[k] = l
	}
	return m
}()

func lowerCommon(k string) string {
	if l, ok := lowerOf[k]; ok {
		return l
	}
	return lower(k)
}
