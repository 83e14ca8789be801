package ports

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Range is an inclusive range of TCP ports; a single port has From == To.
type Range struct {
	From, To uint16
}

// String renders the range as Parse reads it: "3306" or "8000-8100".
func (r Range) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return strconv.Itoa(int(r.From)) + "-" + strconv.Itoa(int(r.To))
}

// Contains reports whether p is in the range.
func (r Range) Contains(p uint16) bool { return r.From <= p && p <= r.To }

// Names maps the name of a container port to its number; it reports false
// for a name it does not know.
type Names func(name string) (uint16, bool)

// Parse reads a comma-separated list of ports ("3306"), inclusive ranges
// ("8000-8100") and, when names is not nil, names of container ports
// ("mysql"). Space around an item or a range's bounds is ignored, and so
// are empty items ("3306,"). Ports are 1-65535.
//
// It returns the ranges of the valid items in their order, and an error
// that names every invalid item and says why.
func Parse(s string, names Names) ([]Range, error) {
	var out []Range
	var bad []string
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, err := parseItem(item, names)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%q %v", item, err))
			continue
		}
		out = append(out, r)
	}
	if len(bad) > 0 {
		return out, errors.New("ports: " + strings.Join(bad, "; "))
	}
	return out, nil
}

func parseItem(item string, names Names) (Range, error) {
	if digits(item) {
		p, ok := port(item)
		if !ok {
			return Range{}, errors.New("is not a port in 1-65535")
		}
		return Range{p, p}, nil
	}
	if lo, hi, ok := strings.Cut(item, "-"); ok {
		lo, hi = strings.TrimSpace(lo), strings.TrimSpace(hi)
		if digits(lo) && digits(hi) {
			from, ok1 := port(lo)
			to, ok2 := port(hi)
			switch {
			case !ok1 || !ok2:
				return Range{}, errors.New("is not a range of ports in 1-65535")
			case to < from:
				return Range{}, errors.New("is a range that ends below its start")
			}
			return Range{from, to}, nil
		}
	}
	if names == nil {
		return Range{}, errors.New("is not a port or a range of ports (e.g. 3306 or 8000-8100)")
	}
	if p, ok := names(item); ok && p != 0 {
		return Range{p, p}, nil
	}
	return Range{}, errors.New("is not a port, a range of ports, or the name of a port of the pod's containers")
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func port(s string) (uint16, bool) {
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err == nil && n != 0
}

// Format renders ranges as Parse reads them: "25,8000-8100".
func Format(rs []Range) string {
	s := make([]string, len(rs))
	for i, r := range rs {
		s[i] = r.String()
	}
	return strings.Join(s, ",")
}

// Contains reports whether p is in one of the ranges.
func Contains(rs []Range, p uint16) bool {
	for _, r := range rs {
		if r.Contains(p) {
			return true
		}
	}
	return false
}
