package main

import (
	"fmt"
	"slices"
)

// medianCells merges the cells of repeated rounds: one cell per path,
// protocol, rate and kind, in the order first seen, each figure the median
// of its rounds' (request counts are summed).
func medianCells(cells []cell) []cell {
	type key struct {
		mode, proto string
		rps, idle   int
	}
	groups := map[key][]cell{}
	var order []key
	for _, c := range cells {
		k := key{c.mode, c.proto, c.rps, c.idleConns}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], c)
	}
	out := make([]cell, 0, len(order))
	for _, k := range order {
		g := groups[k]
		m := g[0]
		m.rounds = len(g)
		var p50, p99, p999, max []float64
		m.ok, m.total = 0, 0
		for _, c := range g {
			p50, p99, p999, max = append(p50, c.p50), append(p99, c.p99), append(p999, c.p999), append(max, c.max)
			m.ok += c.ok
			m.total += c.total
		}
		m.p50, m.p99, m.p999, m.max = median(p50), median(p99), median(p999), median(max)
		m.cpu = perIndex(g, func(c cell) []float64 { return c.cpu })
		m.rssIdle = perIndexInt(g, func(c cell) []int64 { return c.rssIdle })
		m.rssLoad = perIndexInt(g, func(c cell) []int64 { return c.rssLoad })
		out = append(out, m)
	}
	return out
}

// median of vs (the mean of the middle two for an even count); 0 for none.
func median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// perIndex is the median of each per-proxy figure over the cells.
func perIndex(g []cell, f func(cell) []float64) []float64 {
	rows := make([][]float64, len(g))
	for i, c := range g {
		rows[i] = f(c)
	}
	return medianEach(rows)
}

// medianEach is the median of each index of the first row over the rows
// (one per round; a row too short for an index is left out of it).
func medianEach(rows [][]float64) []float64 {
	var out []float64
	for i := range rows[0] {
		var vs []float64
		for _, r := range rows {
			if i < len(r) {
				vs = append(vs, r[i])
			}
		}
		out = append(out, median(vs))
	}
	return out
}

func perIndexInt(g []cell, f func(cell) []int64) []int64 {
	fs := perIndex(g, func(c cell) []float64 {
		var out []float64
		for _, v := range f(c) {
			out = append(out, float64(v))
		}
		return out
	})
	out := make([]int64, len(fs))
	for i, v := range fs {
		out[i] = int64(v)
	}
	return out
}

// roundsNote says how many rounds the figures are medians of.
func roundsNote(cells []cell) string {
	if len(cells) == 0 || cells[0].rounds <= 1 {
		return ""
	}
	return fmt.Sprintf("Each figure is the median of %d rounds; ok/total are summed.\n\n", cells[0].rounds)
}
