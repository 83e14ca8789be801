// Package origdst reads the destination a connection had before iptables
// redirected it to the proxy (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST).
package origdst
