// Command testapp is the workload of the end-to-end tests, one static binary
// in the image localhost/conduit/testapp:
//
//	testapp serve [-addr :8080] [-tcp-addr :9000]  HTTP echo server (and TCP echo)
//	testapp get [-H 'K: V']... [-n N] [-new-conn] [-expect-status C] URL
//	testapp lookup NAME                           resolve NAME, print its addresses
//	testapp tcp ADDR MESSAGE                      send MESSAGE, print what comes back
//	testapp sleep                                 idle until SIGTERM (a client pod)
//
// The HTTP server answers every request with a JSON Echo: the pod that served
// it (POD_NAME, POD_NAMESPACE from the downward API, else the hostname) and the
// request as received, headers included, so that tests can check what a proxy
// added or removed (for example conduit-client-id). GET /status/<code> answers
// with that status code; ?delay=<duration> waits before answering.
package main
