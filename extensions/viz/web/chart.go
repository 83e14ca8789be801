package web

import (
	"fmt"
	"strings"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
)

// Chart geometry (SVG user units).
const (
	chartW, chartH = 300, 60
)

// chart is a sparkline drawn server-side as an SVG polyline.
type chart struct {
	Title, Last, Min, Max string
	Points                string // "x,y x,y ..." in a chartW x chartH box
	Empty                 bool
}

func charts(ts metrics.Timeseries) []chart {
	pct := func(v float64) string { return fmt.Sprintf("%.1f%%", v*100) }
	rps := func(v float64) string { return fmt.Sprintf("%.1f rps", v) }
	ms := func(v float64) string { return fmt.Sprintf("%.1f ms", v) }
	return []chart{
		sparkline("Requests per second", ts.RPS, rps, false),
		sparkline("Success rate", ts.SuccessRate, pct, true),
		sparkline("P95 latency", ts.LatencyP95, ms, false),
	}
}

// sparkline scales points into the box; unit pins the y axis to [0, 1].
func sparkline(title string, pts []metrics.Point, format func(float64) string, unit bool) chart {
	c := chart{Title: title}
	if len(pts) == 0 {
		c.Empty = true
		return c
	}
	lo, hi := pts[0].V, pts[0].V
	for _, p := range pts {
		lo, hi = min(lo, p.V), max(hi, p.V)
	}
	c.Min, c.Max, c.Last = format(lo), format(hi), format(pts[len(pts)-1].V)
	if unit {
		lo, hi = 0, 1
	} else {
		lo = 0
	}
	if hi <= lo {
		hi = lo + 1
	}
	t0, t1 := pts[0].T, pts[len(pts)-1].T
	span := t1.Sub(t0).Seconds()
	var b strings.Builder
	for i, p := range pts {
		x := float64(chartW) / 2
		if span > 0 {
			x = p.T.Sub(t0).Seconds() / span * chartW
		}
		y := chartH - (p.V-lo)/(hi-lo)*(chartH-4) - 2
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%.1f,%.1f", x, y)
	}
	c.Points = b.String()
	return c
}
