// Package appsockets tells whether the application beside the proxy still
// runs, from the sockets of the pod's network namespace.
//
// The proxy shares its network namespace with the application's containers,
// so /proc/net/{tcp,tcp6,udp,udp6} list their sockets as well as its own. A
// socket that a process holds has an inode; one left to the kernel after its
// process exited (TIME_WAIT, FIN_WAIT, ...) has none. The proxy runs as its
// own user (the injector's proxy UID, which proxy-init's rules exempt from
// redirection), so a held socket of any other user belongs to the
// application, or to another container of the pod. Once there is none, the
// application has exited, or holds no socket: either way it no longer needs
// the proxy.
//
// The files are parsed here rather than with github.com/prometheus/procfs,
// whose parsers of them are deprecated (for netlink's sock_diag) and whose
// package compiles a dozen regular expressions at the proxy's start.
package appsockets
