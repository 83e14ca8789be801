// Command testapp is the workload of the end-to-end tests, one static binary
// in the image localhost/conduit/testapp:
//
//	testapp serve [-addr :8080] [-tcp-addr :9000] [-banner-addrs :3306] [-grpc-addr :9090]  HTTP echo server (and TCP, gRPC echo)
//	testapp get [-H 'K: V']... [-X METHOD] [-print-head] [-n N] [-new-conn] [-expect-status C] URL
//	testapp get -n 0 -until-eof -keep-going -summary URL  load generator
//	testapp lookup NAME                           resolve NAME, print its addresses
//	testapp tcp [-banner D] ADDR MESSAGE          send MESSAGE, print what comes back (-banner: read the server's greeting first)
//	testapp grpc [-n N] [-quiet D] ADDR           a full-duplex gRPC stream of N echoed messages (then one quiet for D)
//	testapp grpc -calls N ADDR                    N unary calls on one channel: which pods answered them (JSON)
//	testapp grpc -cancel-after D [-hold H] ADDR   a unary call the server holds for H, cancelled after D without a deadline
//	testapp ws [-n N] [-message M] [-hold D] URL  a WebSocket of N echoed messages "M i" (then wait up to D for the server to close it)
//	testapp sleep                                 idle until SIGTERM (a client pod)
//
// The HTTP server answers every request with a JSON Echo: the pod that served
// it (POD_NAME, POD_NAMESPACE from the downward API, else the hostname) and the
// request as received, headers, body length and trailers included, so that
// tests can check what a proxy added or removed (for example
// conduit-client-id). It speaks HTTP/1.1 and h2c (get -h2c), on -addr and on
// each of -also-addrs (e.g. [::1]:8081, IPv6 loopback only); get -T sends a
// chunked POST ending with the given trailers; get -X sends another method, and
// get -print-head prints each answer's head (status, the length the client
// reads, -1 when unknown, and header fields) as JSON instead of its body. GET /status/<code> answers
// with that status code; ?delay=<duration> waits before answering (GET /abandoned
// counts the delayed requests whose client went first); ?body-delay=<duration>
// sends the head at once and the body that much later, as a long poll does
// (with &length=1 the head announces the body's Content-Length; get
// -header-timeout D fails when a head takes longer than D); ?cut=N sends a
// head, N bytes of body and then fails, the response cut short (the
// connection closed, or the h2c stream reset; &length=1 announces 2N bytes),
// and get -read-delay D waits D after each head before reading the body,
// naming on a failed read how many bytes it got; ?hints=1 sends a 103 Early
// Hints with a Link header before the answer, and get -expect-early-hints
// fails unless one came; ?early=1 answers (with /status/<code>, that code)
// before reading a byte of the body, then closes the connection, as a
// server refusing an upload on its headers, and get -early-upload N PUTs N
// bytes of which only the first 64 KiB go until the answer has come;
// ?fail-first=N&key=K answers 503 to the first N requests with key K (a flaky
// backend, for retries), with the count so far in X-Testapp-Attempt. With
// -upstream URL it passes every request on to URL (path and query included)
// and answers with its own Echo holding the upstream's under "upstream" (a
// web tier in front of a server); with -drain D it answers on SIGTERM for D
// more, /healthz failing, before shutting down, as an application behind a
// Service should while the endpoints and load balancers catch up. With
// -on-stop URL it then GETs URL and logs the answer ("on-stop answered", with
// the status and the body) or the error ("on-stop failed"), as an application
// that calls another service while it stops. With -delay D every echo
// answer waits D first (/healthz, /ws, /websockets and /abandoned answer at
// once, so that the pod stays Ready): a slow pod among fast ones, for
// latency-aware balancing.
//
// GET /ws is a WebSocket echo: it greets with "hello pod=<pod>
// client-id=<conduit-client-id>" and answers each message with "<pod>
// <message>"; GET /websockets counts the open ones. When the server stops
// (after -drain) it closes each with a close frame, 1001 going away, as an
// application that shuts down cleanly does; ws -hold expects that frame and
// fails on a connection lost without one.
//
// The TCP echo (-tcp-addr) answers each line; the server-speaks-first echo
// (-banner-addrs) greets each connection with a line before it reads, as MySQL
// or SMTP servers do, so that a proxy waiting for the client to speak first
// stalls it (tcp -banner D fails when the greeting is later than D); the reset
// echo (-reset-addr) resets each connection once the client has ended its
// side, a server failing mid-connection.
//
// The gRPC server (-grpc-addr) is grpc.testing.TestService echoing payloads;
// it answers with its pod and the conduit-client-id it received in a
// response header, and with a trailer. The grpc command checks all of it
// over one full-duplex stream, each message echoed before the next is sent
// (which hangs if a hop buffers), and an error status on a unary call.
// grpc -calls N instead makes N small unary calls one after the other on
// one channel and prints a JSON line with the calls each pod answered, the
// conduit-client-id each call's server saw, and the connections the channel
// opened. grpc -cancel-after D makes one call that the server is to hold
// (metadata echo-hold: H) and cancels it after D; it has no deadline, so
// only the call's RST_STREAM tells the server, whose /abandoned counts the
// held calls cancelled so, with the HTTP requests.
//
// As a load generator, get sends requests until -duration has passed or
// (-until-eof) its stdin is closed; -keep-going counts failures instead of
// stopping at the first (each one printed on stderr) and exits 1 at the end
// if any; -expect-body fails answers lacking a string. It never retries.
// -summary prints "N ok" (", M failed") instead of the bodies; with -stats
// three more lines follow: "latency p50=… p99=… max=…", "pods a=N b=M …"
// (from X-Testapp-Pod and X-Testapp-Upstream-Pod) and "connections N",
// how many connections it opened (with keep-alive, 1 when every request
// went on one connection).
package main
