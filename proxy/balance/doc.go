// Package balance picks an endpoint per request with power-of-two-choices
// over a peak-EWMA latency estimate weighted by the requests in flight.
package balance
