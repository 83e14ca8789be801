package ipv6mode

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Mode
		wantErr string
	}{
		{in: "auto", want: Auto},
		{in: "on", want: On},
		{in: "off", want: Off},
		// Exactly as written: a caller that tolerates case or space folds
		// the value first.
		{in: "ON", wantErr: `unknown IPv6 mode "ON" (accepted: auto, on, off)`},
		{in: " off", wantErr: `unknown IPv6 mode " off" (accepted: auto, on, off)`},
		{in: "", wantErr: `unknown IPv6 mode "" (accepted: auto, on, off)`},
		// What YAML 1.1 makes of a bare on or off.
		{in: "true", wantErr: `unknown IPv6 mode "true" (accepted: auto, on, off)`},
		{in: "dual", wantErr: `unknown IPv6 mode "dual" (accepted: auto, on, off)`},
	} {
		got, err := Parse(tc.in)
		if tc.wantErr == "" {
			if got != tc.want || err != nil {
				t.Errorf("Parse(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
			continue
		}
		if err == nil || err.Error() != tc.wantErr || got != "" {
			t.Errorf("Parse(%q) = %q, %v; want the error %q", tc.in, got, err, tc.wantErr)
		}
	}
}

// TestModes: every mode listed reads back as itself, and the error names
// them all, so that adding a mode cannot leave it out of the message.
func TestModes(t *testing.T) {
	if Modes[0] != Auto {
		t.Errorf("Modes[0] = %q, want the default %q", Modes[0], Auto)
	}
	if Accepted != "auto, on, off" {
		t.Errorf("Accepted = %q", Accepted)
	}
	_, bad := Parse("x")
	for _, m := range Modes {
		if got, err := Parse(string(m)); got != m || err != nil {
			t.Errorf("Parse(%q) = %q, %v", m, got, err)
		}
		if bad == nil || !strings.Contains(bad.Error(), string(m)) {
			t.Errorf("the error %v does not name %q", bad, m)
		}
	}
}
