package main

import (
	"reflect"
	"testing"
)

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestMedianCellsMergesRounds(t *testing.T) {
	round := func(p50, cpu float64, rss int64) []cell {
		return []cell{
			{mode: "conduit", proto: "http1", rps: 1000, p50: p50, ok: 10, total: 10, cpu: []float64{cpu, cpu / 2}, rssIdle: []int64{rss, rss}, rssLoad: []int64{2 * rss, 2 * rss}},
			{mode: "conduit", proto: "http1", idleConns: 1000, rssIdle: []int64{rss, rss}, rssLoad: []int64{3 * rss, rss}},
			{mode: "direct", proto: "http1", rps: 1000, p50: p50 / 2, ok: 10, total: 10},
		}
	}
	var cells []cell
	cells = append(cells, round(0.3, 0.10, 100)...)
	cells = append(cells, round(0.5, 0.30, 300)...)
	cells = append(cells, round(0.4, 0.20, 200)...)
	got := medianCells(cells)
	if len(got) != 3 {
		t.Fatalf("%d cells, want 3 (one per path, protocol, rate and kind)", len(got))
	}
	c := got[0]
	if c.mode != "conduit" || c.idleConns != 0 || c.p50 != 0.4 || c.ok != 30 || c.total != 30 || c.rounds != 3 {
		t.Errorf("load cell = %+v, want conduit with p50 0.4, 30/30, 3 rounds", c)
	}
	if !reflect.DeepEqual(c.cpu, []float64{0.2, 0.1}) || !reflect.DeepEqual(c.rssLoad, []int64{400, 400}) {
		t.Errorf("per-proxy medians cpu %v rssLoad %v, want [0.2 0.1] and [400 400]", c.cpu, c.rssLoad)
	}
	if i := got[1]; i.idleConns != 1000 || !reflect.DeepEqual(i.rssLoad, []int64{600, 200}) {
		t.Errorf("idle cell = %+v, want 1000 connections with rssLoad [600 200]", i)
	}
	if d := got[2]; d.mode != "direct" || d.p50 != 0.2 {
		t.Errorf("direct cell = %+v, want p50 0.2", d)
	}
}
