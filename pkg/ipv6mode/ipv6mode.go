package ipv6mode

import (
	"fmt"
	"strings"
)

// Mode is a dual-stack mode. What each mode does is up to the component
// that takes it; see Auto, On and Off.
type Mode string

const (
	// Auto uses IPv6 where the pod or host has it, and otherwise goes on
	// with IPv4 alone and says so. It is the default.
	Auto Mode = "auto"
	// On uses IPv6 and fails without it.
	On Mode = "on"
	// Off leaves IPv6 alone: IPv6 connections bypass the proxy.
	Off Mode = "off"
)

// Modes are the accepted modes, the default first.
var Modes = []Mode{Auto, On, Off}

// Accepted lists Modes for a message: "auto, on, off". Parse's error ends
// with it; a caller whose messages have a form of their own (the proxy's
// "NAME=value is invalid (accepted: ...)") uses it alone.
var Accepted = accepted()

func accepted() string {
	names := make([]string, len(Modes))
	for i, m := range Modes {
		names[i] = string(m)
	}
	return strings.Join(names, ", ")
}

// Parse returns the mode s names, exactly as written: lowercase, without
// space around it (a caller that tolerates either folds s first). Its error
// names s and the accepted modes, e.g.
//
//	unknown IPv6 mode "yes" (accepted: auto, on, off)
//
// and no setting: the caller prefixes the flag, variable or annotation
// that held s.
func Parse(s string) (Mode, error) {
	for _, m := range Modes {
		if s == string(m) {
			return m, nil
		}
	}
	return "", fmt.Errorf("unknown IPv6 mode %q (accepted: %s)", s, Accepted)
}
