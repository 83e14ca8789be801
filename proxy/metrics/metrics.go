package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"
)

// LatencyBucketsMs are the upper bounds of response_latency_ms (Linkerd's).
var LatencyBucketsMs = [...]float64{1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 100, 200, 300, 400, 500,
	1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000}

// MaxAuthorities is how many distinct authority label values a direction
// may have. The authority is the client's Host (inbound) or, for a name
// discovery does not know, the application's (outbound): past the limit,
// and for a value that cannot be a host name (longer than maxAuthorityLen,
// or not UTF-8, which would make the whole exposition unreadable), a request
// is counted under OverflowAuthority, so that random Host headers cannot
// grow the metrics without bound.
const MaxAuthorities = 1000

// OverflowAuthority is the authority label of requests whose authority is
// not a label value of its own (see MaxAuthorities).
const OverflowAuthority = "(overflow)"

// maxAuthorityLen is the longest DNS name and a port.
const maxAuthorityLen = 253 + len(":65535")

// RequestKey identifies a request series. PeerLabels is a pre-rendered label
// fragment (e.g. `dst_namespace="ns",dst_pod="p"`), built once per endpoint
// with Labels.
type RequestKey struct {
	Direction  string // inbound | outbound
	Authority  string
	Route      string
	TLS        bool
	PeerID     string // client_id (inbound) or server_id (outbound)
	PeerLabels string
}

type responseKey struct {
	RequestKey
	Status  int
	Failure bool
	GRPC    uint8 // grpc-status + 1; 0: none (see grpcLabel)
}

type responseStats struct {
	count   atomic.Uint64
	buckets [len(LatencyBucketsMs) + 1]atomic.Uint64
	sumUs   atomic.Uint64
}

// TCPKey identifies a connection series.
type TCPKey struct {
	Direction  string
	Peer       string // src (accepted) | dst (connected)
	TLS        bool
	PeerID     string
	PeerLabels string
}

type tcpStats struct {
	open, read, write atomic.Uint64
	// close counts closed connections per CloseClass.
	close  [closeClasses]atomic.Uint64
	active atomic.Int64
}

// CloseClass is how a connection ended, for tcp_close_total's
// classification and errno labels: Success, Failure (no errno, or one not
// in errnoNames), or a failure with one of errnoNames's errnos.
type CloseClass uint8

// The classes without an errno.
const (
	Success CloseClass = iota
	Failure
)

// errnoNames are the errno label values: the errors of a TCP connection
// that tell why it failed. Any other errno is a failure without the label,
// so that the label has a few values at most.
var errnoNames = [...]struct {
	errno syscall.Errno
	name  string
}{
	{syscall.ECONNRESET, "ECONNRESET"},
	{syscall.EPIPE, "EPIPE"},
	{syscall.ETIMEDOUT, "ETIMEDOUT"},
	{syscall.ECONNABORTED, "ECONNABORTED"},
	{syscall.ECONNREFUSED, "ECONNREFUSED"},
	{syscall.EHOSTUNREACH, "EHOSTUNREACH"},
	{syscall.ENETUNREACH, "ENETUNREACH"},
}

const closeClasses = 2 + len(errnoNames)

// Classify returns the class of a connection that ended with err, the
// first error its reads or writes returned (nil: none). Neither a clean
// end (EOF), nor the proxy's own close (net.ErrClosed) or deadline (an idle
// timeout, a request whose client left) is a failure.
func Classify(err error) CloseClass {
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return Success
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		for i, e := range errnoNames {
			if e.errno == errno {
				return Failure + 1 + CloseClass(i)
			}
		}
	}
	return Failure
}

// labels is the class's label fragment, after the series' labels.
func (c CloseClass) labels() string {
	switch {
	case c == Success:
		return `,classification="success"`
	case c == Failure || int(c) >= closeClasses:
		return `,classification="failure"`
	}
	return `,classification="failure",errno="` + errnoNames[c-Failure-1].name + `"`
}

type authKey struct{ direction, authority string }

// Registry holds every series.
type Registry struct {
	mu   sync.RWMutex
	reqs map[RequestKey]*atomic.Uint64
	resp map[responseKey]*responseStats
	tcp  map[TCPKey]*tcpStats
	// auths are the authority label values in use, nauths their number
	// per direction (see MaxAuthorities).
	auths  map[authKey]struct{}
	nauths map[string]int
	// Extra is appended to the exposition (e.g. process metrics).
	Extra func(w io.Writer)
}

// New returns an empty registry.
func New() *Registry {
	return &Registry{
		reqs:   map[RequestKey]*atomic.Uint64{},
		resp:   map[responseKey]*responseStats{},
		tcp:    map[TCPKey]*tcpStats{},
		auths:  map[authKey]struct{}{},
		nauths: map[string]int{},
	}
}

// bound returns k, or k with OverflowAuthority when its authority is not,
// and may not become, a label value (see MaxAuthorities). With admit (the
// write lock held) a new authority becomes one while there is room. It runs
// only for a key without a series yet.
func (r *Registry) bound(k RequestKey, admit bool) RequestKey {
	ak := authKey{k.Direction, k.Authority}
	if _, ok := r.auths[ak]; ok || k.Authority == OverflowAuthority {
		return k
	}
	if len(k.Authority) > maxAuthorityLen || !utf8.ValidString(k.Authority) || r.nauths[k.Direction] >= MaxAuthorities {
		k.Authority = OverflowAuthority
		return k
	}
	if admit {
		r.auths[ak] = struct{}{}
		r.nauths[k.Direction]++
	}
	return k
}

// Request counts one request.
func (r *Registry) Request(k RequestKey) {
	r.mu.RLock()
	c := r.reqs[k]
	if c == nil {
		if b := r.bound(k, false); b.Authority != k.Authority {
			c = r.reqs[b]
		}
	}
	r.mu.RUnlock()
	if c == nil {
		r.mu.Lock()
		k = r.bound(k, true)
		if c = r.reqs[k]; c == nil {
			c = new(atomic.Uint64)
			r.reqs[k] = c
		}
		r.mu.Unlock()
	}
	c.Add(1)
}

// Response records one response (status 0: no response, e.g. a connection error).
func (r *Registry) Response(k RequestKey, status int, failure bool, latency time.Duration) {
	r.response(k, status, 0, failure, latency)
}

// grpcLabel is the grpc_status label of a grpc-status value, plus one: 0
// (no label) when there is none or it is not one of gRPC's codes (0-16),
// which a server could otherwise make into any number of series.
func grpcLabel(gs string) uint8 {
	switch {
	case len(gs) == 1 && gs[0] >= '0' && gs[0] <= '9':
		return gs[0] - '0' + 1
	case len(gs) == 2 && gs[0] == '1' && gs[1] >= '0' && gs[1] <= '6':
		return 10 + gs[1] - '0' + 1
	}
	return 0
}

func (r *Registry) response(k RequestKey, status int, grpc uint8, failure bool, latency time.Duration) {
	rk := responseKey{RequestKey: k, Status: status, Failure: failure, GRPC: grpc}
	r.mu.RLock()
	s := r.resp[rk]
	if s == nil {
		if b := r.bound(k, false); b.Authority != k.Authority {
			s = r.resp[responseKey{RequestKey: b, Status: status, Failure: failure, GRPC: grpc}]
		}
	}
	r.mu.RUnlock()
	if s == nil {
		r.mu.Lock()
		rk.RequestKey = r.bound(k, true)
		if s = r.resp[rk]; s == nil {
			s = new(responseStats)
			r.resp[rk] = s
		}
		r.mu.Unlock()
	}
	s.count.Add(1)
	ms := float64(latency) / float64(time.Millisecond)
	i := sort.SearchFloat64s(LatencyBucketsMs[:], ms)
	s.buckets[i].Add(1)
	s.sumUs.Add(uint64(latency / time.Microsecond))
}

// TCP is the live statistics handle of one connection series.
type TCP struct{ s *tcpStats }

// Open counts a new connection and returns its handle.
func (r *Registry) Open(k TCPKey) TCP {
	r.mu.RLock()
	s := r.tcp[k]
	r.mu.RUnlock()
	if s == nil {
		r.mu.Lock()
		if s = r.tcp[k]; s == nil {
			s = new(tcpStats)
			r.tcp[k] = s
		}
		r.mu.Unlock()
	}
	s.open.Add(1)
	s.active.Add(1)
	return TCP{s}
}

// Valid reports whether t was returned by Open.
func (t TCP) Valid() bool { return t.s != nil }

// Read adds n bytes read from the peer.
func (t TCP) Read(n int) {
	if t.s != nil && n > 0 {
		t.s.read.Add(uint64(n))
	}
}

// Write adds n bytes written to the peer.
func (t TCP) Write(n int) {
	if t.s != nil && n > 0 {
		t.s.write.Add(uint64(n))
	}
}

// Close counts the connection's end, a success.
func (t TCP) Close() { t.CloseAs(Success) }

// CloseErr counts the end of a connection whose first read or write error
// was err (see Classify).
func (t TCP) CloseErr(err error) { t.CloseAs(Classify(err)) }

// CloseAs counts the connection's end as c.
func (t TCP) CloseAs(c CloseClass) {
	if t.s != nil {
		if int(c) >= closeClasses {
			c = Failure
		}
		t.s.close[c].Add(1)
		t.s.active.Add(-1)
	}
}

// Labels renders a label fragment from a map of discovery metric labels,
// prefixing each name (e.g. "dst_"). Keys are sorted; invalid characters in
// names become '_'.
func Labels(prefix string, m map[string]string) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(sanitize(prefix + k))
		b.WriteString(`="`)
		b.WriteString(escape(m[k]))
		b.WriteByte('"')
	}
	return b.String()
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || (i > 0 && c >= '0' && c <= '9')
		if !ok {
			b[i] = '_'
		}
	}
	return string(b)
}

func escape(s string) string {
	if !strings.ContainsAny(s, "\\\"\n") {
		return s
	}
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

func (k RequestKey) labels() string {
	var b strings.Builder
	b.WriteString(`direction="`)
	b.WriteString(k.Direction)
	b.WriteString(`",authority="`)
	b.WriteString(escape(k.Authority))
	b.WriteString(`",route="`)
	b.WriteString(escape(k.Route))
	b.WriteString(`",tls="`)
	b.WriteString(strconv.FormatBool(k.TLS))
	b.WriteByte('"')
	writePeer(&b, k.Direction, k.PeerID, k.PeerLabels)
	return b.String()
}

func writePeer(b *strings.Builder, direction, id, labels string) {
	if id != "" {
		if direction == "inbound" {
			b.WriteString(`,client_id="`)
		} else {
			b.WriteString(`,server_id="`)
		}
		b.WriteString(escape(id))
		b.WriteByte('"')
	}
	if labels != "" {
		b.WriteByte(',')
		b.WriteString(labels)
	}
}

func (k TCPKey) labels() string {
	var b strings.Builder
	b.WriteString(`direction="`)
	b.WriteString(k.Direction)
	b.WriteString(`",peer="`)
	b.WriteString(k.Peer)
	b.WriteString(`",tls="`)
	b.WriteString(strconv.FormatBool(k.TLS))
	b.WriteByte('"')
	writePeer(&b, k.Direction, k.PeerID, k.PeerLabels)
	return b.String()
}

// WriteTo renders every series in the Prometheus text format.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	bw := bufio.NewWriter(w)
	r.mu.RLock()
	var reqs, resps, hist, tcpOpen, tcpClose, tcpRead, tcpWrite, tcpActive []string
	for k, c := range r.reqs {
		reqs = append(reqs, fmt.Sprintf("request_total{%s} %d", k.labels(), c.Load()))
	}
	for k, s := range r.resp {
		l := k.labels()
		class := "success"
		if k.Failure {
			class = "failure"
		}
		status := ""
		if k.Status != 0 {
			status = `,status_code="` + strconv.Itoa(k.Status) + `"`
		}
		if k.GRPC != 0 {
			status += `,grpc_status="` + strconv.Itoa(int(k.GRPC)-1) + `"`
		}
		rl := l + `,classification="` + class + `"` + status
		resps = append(resps, fmt.Sprintf("response_total{%s} %d", rl, s.count.Load()))
		var cum uint64
		for i, ub := range LatencyBucketsMs {
			cum += s.buckets[i].Load()
			hist = append(hist, fmt.Sprintf("response_latency_ms_bucket{%s,le=\"%s\"} %d", rl, strconv.FormatFloat(ub, 'f', -1, 64), cum))
		}
		cum += s.buckets[len(LatencyBucketsMs)].Load()
		hist = append(hist, fmt.Sprintf("response_latency_ms_bucket{%s,le=\"+Inf\"} %d", rl, cum))
		hist = append(hist, fmt.Sprintf("response_latency_ms_count{%s} %d", rl, cum))
		hist = append(hist, fmt.Sprintf("response_latency_ms_sum{%s} %s", rl, strconv.FormatFloat(float64(s.sumUs.Load())/1000, 'f', 3, 64)))
	}
	for k, s := range r.tcp {
		l := k.labels()
		tcpOpen = append(tcpOpen, fmt.Sprintf("tcp_open_total{%s} %d", l, s.open.Load()))
		for c := range CloseClass(closeClasses) {
			// Success is shown from the connection's first open, as the
			// other counters; a failure once it happened.
			if n := s.close[c].Load(); n > 0 || c == Success {
				tcpClose = append(tcpClose, fmt.Sprintf("tcp_close_total{%s%s} %d", l, c.labels(), n))
			}
		}
		tcpRead = append(tcpRead, fmt.Sprintf("tcp_read_bytes_total{%s} %d", l, s.read.Load()))
		tcpWrite = append(tcpWrite, fmt.Sprintf("tcp_write_bytes_total{%s} %d", l, s.write.Load()))
		tcpActive = append(tcpActive, fmt.Sprintf("tcp_open_connections{%s} %d", l, s.active.Load()))
	}
	r.mu.RUnlock()
	fam := func(name, typ, help string, lines []string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
		sort.Strings(lines)
		for _, l := range lines {
			bw.WriteString(l)
			bw.WriteByte('\n')
		}
	}
	fam("request_total", "counter", "Total number of HTTP requests the proxy has routed.", reqs)
	fam("response_total", "counter", "Total number of HTTP responses the proxy has served.", resps)
	fam("response_latency_ms", "histogram", "Elapsed times between a request's headers being received and its response stream completing.", hist)
	fam("tcp_open_total", "counter", "Total count of opened connections.", tcpOpen)
	fam("tcp_close_total", "counter", "Total count of closed connections.", tcpClose)
	fam("tcp_read_bytes_total", "counter", "Total count of bytes read from peers.", tcpRead)
	fam("tcp_write_bytes_total", "counter", "Total count of bytes written to peers.", tcpWrite)
	fam("tcp_open_connections", "gauge", "Number of currently-open connections.", tcpActive)
	if r.Extra != nil {
		r.Extra(bw)
	}
	return 0, bw.Flush()
}
