package injector

import "time"

// DefaultShutdownDelay is how long the injector keeps serving after SIGTERM
// (controller injector --shutdown-delay, through procutil.DelayCancel).
//
// The API server reaches the webhook through the conduit-injector Service,
// that is through kube-proxy's rules, which drop a terminating replica only
// a moment after it was told to stop (up to about a second on a loaded node).
// A replica that stopped listening at once would, in that window, refuse or
// (once its pod is gone) black-hole the admission calls routed to it; with
// failurePolicy Ignore every pod created then is admitted without a proxy.
// That is what a rolling restart of the injector (mesh upgrade, mesh identity
// rotate-anchors) followed by pod creations hit.
//
// The Service's rules only steer new connections: the API server keeps its
// open connection to this replica, and a connection closed at the end of the
// delay races the API server's next call on it ("write: broken pipe", the
// call fails open). So during the delay the webhook closes each connection
// once it has answered on it (Options.Terminating): Connection: close on
// HTTP/1.1, GOAWAY on HTTP/2, after which the API server's next call opens a
// new connection, to a replica that stays.
const DefaultShutdownDelay = 5 * time.Second
