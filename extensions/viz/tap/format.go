package tap

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"

	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

func dirName(d tapv1.Direction) string {
	switch d {
	case tapv1.Direction_INBOUND:
		return "in"
	case tapv1.Direction_OUTBOUND:
		return "out"
	}
	return "?"
}

func dur(d interface{ AsDuration() time.Duration }) string {
	v := d.AsDuration()
	switch {
	case v < time.Millisecond:
		return fmt.Sprintf("%dµs", v.Microseconds())
	case v < 10*time.Second:
		return fmt.Sprintf("%.1fms", float64(v.Microseconds())/1000)
	}
	return v.Round(time.Millisecond).String()
}

// WriteEvent writes one event as a line:
//
//	req id=web-0:1 proxy=in src=10.0.0.1:41234 dst=10.0.0.2:8080 tls=true client-id=... :method=GET :authority=web:80 :path=/
//	rsp id=web-0:1 proxy=in src=... dst=... tls=true :status=200 latency=1.2ms
//	end id=web-0:1 proxy=in src=... dst=... tls=true duration=1.5ms response-length=12B
func WriteEvent(w io.Writer, e Event) error {
	ev := e.Event
	var b strings.Builder
	head := func(kind string) {
		fmt.Fprintf(&b, "%s id=%s:%d proxy=%s src=%s dst=%s tls=%t", kind, e.Pod.Name, ev.GetStreamId(), dirName(ev.GetDirection()),
			ev.GetSource(), ev.GetDestination(), ev.GetTls())
	}
	switch x := ev.GetEvent().(type) {
	case *tapv1.TapEvent_RequestInit:
		head("req")
		if ev.GetClientId() != "" {
			fmt.Fprintf(&b, " client-id=%s", ev.GetClientId())
		}
		if ev.GetServerId() != "" {
			fmt.Fprintf(&b, " server-id=%s", ev.GetServerId())
		}
		if l := sortedLabels(ev.GetDestinationLabels()); l != "" {
			b.WriteString(" " + l)
		}
		r := x.RequestInit
		fmt.Fprintf(&b, " :method=%s :authority=%s :path=%s", shown(r.GetMethod()), shown(r.GetAuthority()), shown(r.GetPath()))
		if ev.GetRoute() != "" {
			fmt.Fprintf(&b, " route=%q", ev.GetRoute())
		}
	case *tapv1.TapEvent_ResponseInit:
		head("rsp")
		fmt.Fprintf(&b, " :status=%d latency=%s", x.ResponseInit.GetHttpStatus(), dur(x.ResponseInit.GetSinceRequestInit()))
	case *tapv1.TapEvent_ResponseEnd:
		head("end")
		r := x.ResponseEnd
		fmt.Fprintf(&b, " duration=%s response-length=%dB", dur(r.GetSinceRequestInit()), r.GetResponseBytes())
		if r.GrpcStatus != nil {
			fmt.Fprintf(&b, " grpc-status=%d", r.GetGrpcStatus())
		}
		if r.GetError() != "" {
			fmt.Fprintf(&b, " error=%q", r.GetError())
		}
	default:
		return nil
	}
	b.WriteByte('\n')
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteEventJSON writes one event as a JSON line {"pod": ..., "namespace": ..., "event": {...}}.
func WriteEventJSON(w io.Writer, e Event) error {
	ev, err := protojson.Marshal(e.Event)
	if err != nil {
		return fmt.Errorf("tap: encoding event: %w", err)
	}
	// protojson's spacing is deliberately unstable: re-encode for stable lines.
	var obj any
	if err := json.Unmarshal(ev, &obj); err != nil {
		return fmt.Errorf("tap: encoding event: %w", err)
	}
	b, err := json.Marshal(struct {
		Namespace string `json:"namespace"`
		Pod       string `json:"pod"`
		Event     any    `json:"event"`
	}{e.Pod.Namespace, e.Pod.Name, obj})
	if err != nil {
		return fmt.Errorf("tap: encoding event: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

type topKey struct{ Direction, Method, Authority, Path string }

type topRow struct {
	topKey
	Count, Success    int
	Best, Worst, Last time.Duration
}

// Top aggregates tapped requests by direction, method, authority and path.
type Top struct {
	pending map[string]topKey // by pod:stream, from request_init
	status  map[string]uint32
	rows    map[topKey]*topRow
	done    int
}

// NewTop returns an empty aggregation.
func NewTop() *Top {
	return &Top{pending: map[string]topKey{}, status: map[string]uint32{}, rows: map[topKey]*topRow{}}
}

// Add records an event; it returns the number of completed requests.
func (t *Top) Add(e Event) int {
	ev := e.Event
	id := fmt.Sprintf("%s/%s:%d", e.Pod.Namespace, e.Pod.Name, ev.GetStreamId())
	switch x := ev.GetEvent().(type) {
	case *tapv1.TapEvent_RequestInit:
		r := x.RequestInit
		t.pending[id] = topKey{dirName(ev.GetDirection()), r.GetMethod(), r.GetAuthority(), r.GetPath()}
	case *tapv1.TapEvent_ResponseInit:
		t.status[id] = x.ResponseInit.GetHttpStatus()
	case *tapv1.TapEvent_ResponseEnd:
		k, ok := t.pending[id]
		if !ok {
			return t.done // started before the tap
		}
		status := t.status[id]
		delete(t.pending, id)
		delete(t.status, id)
		row := t.rows[k]
		if row == nil {
			row = &topRow{topKey: k}
			t.rows[k] = row
		}
		d := x.ResponseEnd.GetSinceRequestInit().AsDuration()
		row.Count++
		// A response without headers (status 0) counts by the proxy's classification alone.
		if !x.ResponseEnd.GetFailure() && x.ResponseEnd.GetError() == "" && status < 500 {
			row.Success++
		}
		if row.Count == 1 || d < row.Best {
			row.Best = d
		}
		if d > row.Worst {
			row.Worst = d
		}
		row.Last = d
		t.done++
	}
	return t.done
}

// shown is a request's string as printed: as it is when every rune is
// printable and not a space, quoted otherwise. The strings come from a
// client's request: a control character (an escape sequence) would act on
// the terminal, and a space would split the line's fields.
func shown(s string) string {
	for _, r := range s {
		if r == ' ' || !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }

// sorted returns the rows busiest first.
func (t *Top) sorted() []*topRow {
	rows := make([]*topRow, 0, len(t.rows))
	for _, r := range t.rows {
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		return fmt.Sprint(a.topKey) < fmt.Sprint(b.topKey)
	})
	return rows
}

// TopRow is a row of `mesh viz top -o json`: the completed requests of one
// direction, method, authority and path.
type TopRow struct {
	Direction   string  `json:"direction"` // "in" or "out", the proxy's side
	Method      string  `json:"method"`
	Authority   string  `json:"authority"`
	Path        string  `json:"path"`
	Count       int     `json:"count"`       // completed requests
	SuccessRate float64 `json:"successRate"` // 0..1, as stat's
	BestMs      float64 `json:"bestLatencyMs"`
	WorstMs     float64 `json:"worstLatencyMs"`
	LastMs      float64 `json:"lastLatencyMs"`
}

// Rows returns the rows, busiest first (empty, not nil, when none).
func (t *Top) Rows() []TopRow {
	out := []TopRow{}
	for _, r := range t.sorted() {
		out = append(out, TopRow{Direction: r.Direction, Method: r.Method, Authority: r.Authority, Path: r.Path, Count: r.Count,
			SuccessRate: float64(r.Success) / float64(r.Count), BestMs: msf(r.Best), WorstMs: msf(r.Worst), LastMs: msf(r.Last)})
	}
	return out
}

// msf is d in milliseconds, to the microsecond.
func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// WriteJSON writes Rows as an indented JSON array, as stat's -o json.
func (t *Top) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(t.Rows()); err != nil {
		return fmt.Errorf("tap: encoding top: %w", err)
	}
	return nil
}

// Write renders the table, busiest first.
func (t *Top) Write(w io.Writer) error {
	rows := t.sorted()
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No requests tapped.")
		return err
	}
	header := []string{"DIRECTION", "METHOD", "AUTHORITY", "PATH", "COUNT", "SUCCESS", "BEST", "WORST", "LAST"}
	cells := [][]string{header}
	for _, r := range rows {
		cells = append(cells, []string{r.Direction, shown(r.Method), shown(r.Authority), shown(r.Path), fmt.Sprint(r.Count),
			fmt.Sprintf("%.2f%%", 100*float64(r.Success)/float64(r.Count)), ms(r.Best), ms(r.Worst), ms(r.Last)})
	}
	width := make([]int, len(header))
	for _, c := range cells {
		for i, s := range c {
			width[i] = max(width[i], len([]rune(s)))
		}
	}
	var b strings.Builder
	for _, c := range cells {
		for i, s := range c {
			if i > 0 {
				b.WriteString("   ")
			}
			pad := strings.Repeat(" ", width[i]-len([]rune(s)))
			if i < 4 {
				if i == len(c)-1 {
					pad = ""
				}
				b.WriteString(s + pad)
			} else {
				b.WriteString(pad + s)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}
