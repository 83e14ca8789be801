package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
)

// Output formats of the query commands.
const (
	OutputTable = "table"
	OutputWide  = "wide"
	OutputJSON  = "json"
)

func checkOutput(o string) error {
	switch o {
	case OutputTable, OutputWide, OutputJSON:
		return nil
	}
	return fmt.Errorf("viz: unknown output format %q (accepted: table, wide, json)", o)
}

// table writes aligned columns: the first `left` columns left-aligned (names),
// the others right-aligned (numbers).
type table struct {
	header []string
	rows   [][]string
	left   int
}

func (t *table) write(w io.Writer) error {
	width := make([]int, len(t.header))
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, r := range append([][]string{t.header}, t.rows...) {
		for i, c := range r {
			pad := strings.Repeat(" ", width[i]-len([]rune(c)))
			if i > 0 {
				b.WriteString("   ")
			}
			if i < t.left {
				b.WriteString(c)
				if i < len(r)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad + c)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func pct(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", *v*100)
}

func rps(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.1frps", *v)
}

func ms(v *float64) string {
	if v == nil {
		return "-"
	}
	if *v < 10 {
		return fmt.Sprintf("%.1fms", *v)
	}
	return fmt.Sprintf("%.0fms", *v)
}

func count(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.0f", *v)
}

// WriteStat renders stat rows. Namespaces show when showNS (-A) or wide;
// wide adds the share of requests over mTLS.
func WriteStat(w io.Writer, rows []metrics.StatRow, output string, showNS bool) error {
	if output == OutputJSON {
		if rows == nil {
			rows = []metrics.StatRow{}
		}
		return writeJSON(w, rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, "No resources found.")
		return err
	}
	wide := output == OutputWide
	showNS = (showNS || wide) && rows[0].Kind != metrics.KindNamespace
	t := &table{left: 1}
	if showNS {
		t.header, t.left = append(t.header, "NAMESPACE"), 2
	}
	t.header = append(t.header, "NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN")
	if wide {
		t.header = append(t.header, "MTLS")
	}
	for _, r := range rows {
		var c []string
		if showNS {
			c = append(c, r.Namespace)
		}
		c = append(c, r.Name, fmt.Sprintf("%d/%d", r.MeshedPods, r.TotalPods), pct(r.SuccessRate), rps(r.RPS),
			ms(r.LatencyP50), ms(r.LatencyP95), ms(r.LatencyP99), count(r.TCPConnections))
		if wide {
			c = append(c, pct(r.TLSRate))
		}
		t.rows = append(t.rows, c)
	}
	return t.write(w)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// WriteEdges renders edges with the identities each side authenticated.
func WriteEdges(w io.Writer, edges []metrics.Edge, output string) error {
	if output == OutputJSON {
		if edges == nil {
			edges = []metrics.Edge{}
		}
		return writeJSON(w, edges)
	}
	if len(edges) == 0 {
		_, err := fmt.Fprintln(w, "No edges found.")
		return err
	}
	t := &table{left: 7, header: []string{"SRC", "DST", "SRC_NS", "DST_NS", "SECURED", "CLIENT_ID", "SERVER_ID"}}
	if output == OutputWide {
		t.header, t.left = append(t.header, "RPS"), 7
	}
	for _, e := range edges {
		sec := "×"
		if e.Secured {
			sec = "√"
		}
		c := []string{e.Src.Name, e.Dst.Name, e.Src.Namespace, e.Dst.Namespace, sec, dash(e.ClientID), dash(e.ServerID)}
		if output == OutputWide {
			v := e.RPS
			c = append(c, rps(&v))
		}
		t.rows = append(t.rows, c)
	}
	return t.write(w)
}

// WriteRoutes renders per-route metrics.
func WriteRoutes(w io.Writer, routes []metrics.RouteRow, output string) error {
	if output == OutputJSON {
		if routes == nil {
			routes = []metrics.RouteRow{}
		}
		return writeJSON(w, routes)
	}
	if len(routes) == 0 {
		_, err := fmt.Fprintln(w, "No routes found (no traffic from meshed clients, and no ServiceProfile routes).")
		return err
	}
	t := &table{left: 2, header: []string{"ROUTE", "SERVICE", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99"}}
	for _, r := range routes {
		svc, _, _ := strings.Cut(r.Authority, ".")
		svc, _, _ = strings.Cut(svc, ":")
		t.rows = append(t.rows, []string{r.Route, dash(svc), pct(r.SuccessRate), rps(r.RPS), ms(r.LatencyP50), ms(r.LatencyP95), ms(r.LatencyP99)})
	}
	return t.write(w)
}
