package app

import (
	"context"

	demov1 "github.com/conduit-mesh/conduit/proto/demo/v1"
)

var quotes = []*demov1.Quote{
	{Text: "Simplicity is prerequisite for reliability.", Author: "Edsger W. Dijkstra"},
	{Text: "The network is reliable.", Author: "the first fallacy of distributed computing"},
	{Text: "Make it work, make it right, make it fast.", Author: "Kent Beck"},
	{Text: "Don't communicate by sharing memory; share memory by communicating.", Author: "Rob Pike"},
	{Text: "Everything fails, all the time.", Author: "Werner Vogels"},
}

// QuotesServer serves conduit.demo.v1.Quotes.
type QuotesServer struct {
	demov1.UnimplementedQuotesServer
	// Name is reported in every answer (the pod name).
	Name string
}

// Get returns the quote at index (wrapping around).
func (s *QuotesServer) Get(_ context.Context, req *demov1.GetQuoteRequest) (*demov1.Quote, error) {
	q := quotes[int(req.GetIndex())%len(quotes)]
	return &demov1.Quote{Text: q.Text, Author: q.Author, ServedBy: s.Name}, nil
}
