package web

import (
	"fmt"
	"testing"
	"time"

	"github.com/conduit-mesh/conduit/extensions/viz/metrics"
)

func TestSparkline(t *testing.T) {
	t0 := time.Unix(0, 0)
	f := func(v float64) string { return fmt.Sprint(v) }
	for _, tc := range []struct {
		name string
		pts  []metrics.Point
		unit bool
		want chart
	}{
		{"empty", nil, false, chart{Title: "x", Empty: true}},
		{"one point is centred", []metrics.Point{{T: t0, V: 5}}, false, chart{Title: "x", Points: "150.0,2.0", Last: "5", Min: "5", Max: "5"}},
		{"scaled from zero", []metrics.Point{{T: t0, V: 0}, {T: t0.Add(time.Minute), V: 4}, {T: t0.Add(2 * time.Minute), V: 2}}, false,
			chart{Title: "x", Points: "0.0,58.0 150.0,2.0 300.0,30.0", Last: "2", Min: "0", Max: "4"}},
		{"unit axis", []metrics.Point{{T: t0, V: 0.5}, {T: t0.Add(time.Minute), V: 1}}, true,
			chart{Title: "x", Points: "0.0,30.0 300.0,2.0", Last: "1", Min: "0.5", Max: "1"}},
	} {
		if got := sparkline("x", tc.pts, f, tc.unit); got != tc.want {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
