package ports

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	names := Names(func(n string) (uint16, bool) {
		p, ok := map[string]uint16{"mysql": 3306, "http-alt": 8080}[n]
		return p, ok
	})
	for _, tc := range []struct {
		in       string
		names    Names
		want     string // Format of the ranges returned
		wantErrs []string
	}{
		{in: "", want: ""},
		{in: " , ,", want: ""},
		{in: "25,587,8000-8100", want: "25,587,8000-8100"},
		// Space and empty items, as people write them.
		{in: " 3306, 5432 ,", want: "3306,5432"},
		{in: "3306,,5432", want: "3306,5432"},
		{in: "8000 - 8100", want: "8000-8100"},
		{in: "1-65535", want: "1-65535"},
		{in: "80-80", want: "80"},
		{in: "0", wantErrs: []string{`"0" is not a port in 1-65535`}},
		{in: "65536", wantErrs: []string{`"65536" is not a port in 1-65535`}},
		{in: "99999999999999999999", wantErrs: []string{"is not a port in 1-65535"}},
		{in: "0-80", wantErrs: []string{`"0-80" is not a range of ports`}},
		{in: "80-70", wantErrs: []string{`"80-70" is a range that ends below its start`}},
		{in: "+80", wantErrs: []string{`"+80" is not a port or a range`}},
		{in: "1-", wantErrs: []string{`"1-" is not a port or a range`}},
		{in: "-1", wantErrs: []string{`"-1" is not a port or a range`}},
		{in: "1-2-3", wantErrs: []string{`"1-2-3" is not a port or a range`}},
		// Every invalid item is named; the valid ones are still returned.
		{in: "25,http,0,587", want: "25,587", wantErrs: []string{`"http" is not a port`, `"0" is not a port in 1-65535`}},
		// Names only where a resolver is given, and only the pod's.
		{in: "mysql", wantErrs: []string{`"mysql" is not a port or a range of ports`}},
		{in: "mysql, http-alt, 25", names: names, want: "3306,8080,25"},
		{in: "mysql,redis", names: names, want: "3306", wantErrs: []string{`"redis" is not a port, a range of ports, or the name of a port of the pod's containers`}},
		{in: "8000-8100", names: names, want: "8000-8100"},
	} {
		got, err := Parse(tc.in, tc.names)
		if f := Format(got); f != tc.want {
			t.Errorf("Parse(%q) = %q, want %q", tc.in, f, tc.want)
		}
		if len(tc.wantErrs) == 0 {
			if err != nil {
				t.Errorf("Parse(%q): %v", tc.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Parse(%q) accepted it, want an error naming %q", tc.in, tc.wantErrs)
			continue
		}
		for _, w := range tc.wantErrs {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Parse(%q) error %q does not say %q", tc.in, err, w)
			}
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%q) error %q spans lines (it goes into admission messages)", tc.in, err)
		}
	}
}

func TestContains(t *testing.T) {
	rs, err := Parse("25,8000-8100", nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[uint16]bool{25: true, 26: false, 7999: false, 8000: true, 8050: true, 8100: true, 8101: false, 0: false} {
		if got := Contains(rs, p); got != want {
			t.Errorf("Contains(%d) = %v, want %v", p, got, want)
		}
	}
}

// FuzzParse: whatever the input, the ranges returned are valid, and the list
// Format renders reads back the same, without error.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"25,587", "1-65535", "", " 80 - 80 , 443,", "mysql,0,70000", "8000-7000", "1-2-3", "٣٣٠٦"} {
		f.Add(s)
	}
	names := Names(func(n string) (uint16, bool) { return 3306, n == "mysql" })
	f.Fuzz(func(t *testing.T, s string) {
		for _, nm := range []Names{nil, names} {
			rs, err := Parse(s, nm)
			if err == nil && strings.TrimSpace(strings.ReplaceAll(s, ",", "")) != "" && len(rs) == 0 {
				t.Fatalf("Parse(%q) accepted a non-empty list and returned no range", s)
			}
			for _, r := range rs {
				if r.From == 0 || r.To < r.From {
					t.Fatalf("Parse(%q) returned the invalid range %+v", s, r)
				}
			}
			back, err := Parse(Format(rs), nil)
			if err != nil || Format(back) != Format(rs) {
				t.Fatalf("Parse(%q) = %q, which reads back as %q, %v", s, Format(rs), Format(back), err)
			}
		}
	})
}
