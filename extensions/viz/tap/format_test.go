package tap

import (
	"strings"
	"testing"

	tapv1 "github.com/conduit-mesh/conduit/proto/tap/v1"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestFormatQuotesRequestStrings: a request's method, authority and path
// come from a client; printed as they are, an escape sequence would act on
// the operator's terminal and a space would split the line's fields. Those
// are quoted, in tap's lines and in top's table; plain ones are not.
func TestFormatQuotesRequestStrings(t *testing.T) {
	tests := []struct {
		name, authority, path string
		want                  string
	}{
		{"plain", "web:80", "/api/list?x=1", ":authority=web:80 :path=/api/list?x=1"},
		{"escape sequence", "web:80", "/\x1b]0;owned\x07", `:path="/\x1b]0;owned\a"`},
		{"space", "web 80", "/", `:authority="web 80"`},
		{"newline", "web:80", "/a\nreq id=fake", `:path="/a\nreq id=fake"`},
		{"unicode", "wéb:80", "/ü", ":authority=wéb:80 :path=/ü"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := &tapv1.TapEvent{StreamId: 1, Event: &tapv1.TapEvent_RequestInit{RequestInit: &tapv1.RequestInit{
				Method: "GET", Authority: tc.authority, Path: tc.path}}}
			var b strings.Builder
			if err := WriteEvent(&b, Event{Pod: Target{Name: "web-0"}, Event: req}); err != nil {
				t.Fatal(err)
			}
			line := b.String()
			if !strings.Contains(line, tc.want) || strings.ContainsAny(strings.TrimSuffix(line, "\n"), "\x1b\x07\n") {
				t.Errorf("line %q, want it to contain %q and no control character", line, tc.want)
			}
			top := NewTop()
			top.Add(Event{Pod: Target{Name: "web-0"}, Event: req})
			top.Add(Event{Pod: Target{Name: "web-0"}, Event: &tapv1.TapEvent{StreamId: 1, Event: &tapv1.TapEvent_ResponseEnd{
				ResponseEnd: &tapv1.ResponseEnd{SinceRequestInit: durationpb.New(0)}}}})
			var tb strings.Builder
			if err := top.Write(&tb); err != nil {
				t.Fatal(err)
			}
			if strings.ContainsAny(tb.String(), "\x1b\x07") || strings.Count(tb.String(), "\n") != 2 {
				t.Errorf("top table %q: want two lines and no control character", tb.String())
			}
		})
	}
}

// TestTopJSONEmpty: with no request tapped, -o json is an empty array (the
// table says "No requests tapped.", which is no JSON).
func TestTopJSONEmpty(t *testing.T) {
	for _, tc := range []struct {
		name string
		json bool
		want string
	}{
		{"json", true, "[]\n"},
		{"table", false, "No requests tapped.\n"},
	} {
		var b strings.Builder
		top := NewTop()
		write := top.Write
		if tc.json {
			write = top.WriteJSON
		}
		if err := write(&b); err != nil || b.String() != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, b.String(), err, tc.want)
		}
	}
}
