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
const DefaultShutdownDelay = 5 * time.Second
