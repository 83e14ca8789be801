// Package logtest holds what the proxy's tests share to read a component's
// log: a Buffer its logger writes to while the test reads it.
package logtest
