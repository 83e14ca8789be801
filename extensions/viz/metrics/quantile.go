package metrics

import (
	"math"
	"sort"
	"strconv"
)

// bucket is one cumulative histogram bucket: the count of observations <= le.
type bucket struct {
	le    float64
	count float64
}

// quantile estimates the q-quantile of a cumulative histogram the way
// PromQL's histogram_quantile does: linear interpolation inside the bucket
// holding the rank; the +Inf bucket yields the upper bound of the previous one.
// ok is false when the histogram is empty or malformed.
func quantile(q float64, buckets []bucket) (v float64, ok bool) {
	if len(buckets) == 0 || q < 0 || q > 1 {
		return 0, false
	}
	bs := append([]bucket(nil), buckets...)
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	if !math.IsInf(bs[len(bs)-1].le, 1) {
		return 0, false
	}
	// Counts must be monotonic; rates of separate series can jitter.
	for i := 1; i < len(bs); i++ {
		if bs[i].count < bs[i-1].count {
			bs[i].count = bs[i-1].count
		}
	}
	total := bs[len(bs)-1].count
	if total <= 0 {
		return 0, false
	}
	rank := q * total
	i := sort.Search(len(bs), func(i int) bool { return bs[i].count >= rank })
	if i == len(bs)-1 {
		if len(bs) < 2 {
			return 0, false
		}
		return bs[len(bs)-2].le, true
	}
	lower, prev := 0.0, 0.0
	if i > 0 {
		lower, prev = bs[i-1].le, bs[i-1].count
	} else if bs[0].le <= 0 {
		return bs[0].le, true
	}
	in := bs[i].count - prev
	if in <= 0 {
		return bs[i].le, true
	}
	return lower + (bs[i].le-lower)*(rank-prev)/in, true
}

func parseLe(s string) (float64, bool) {
	if s == "+Inf" {
		return math.Inf(1), true
	}
	v, err := strconv.ParseFloat(s, 64)
	return v, err == nil
}
