package app

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"sync/atomic"

	demov1 "github.com/conduit-mesh/conduit/proto/demo/v1"
)

// Web is the front end: GET / renders a page, GET /api/quote calls both
// backends and returns JSON. Failures of a backend become a 502 naming it.
type Web struct {
	Quotes     demov1.QuotesClient
	CounterURL string // e.g. http://counter.conduit-demo.svc.cluster.local:8080
	HTTP       *http.Client
	next       atomic.Uint32
}

// Answer is the JSON of /api/quote.
type Answer struct {
	Quote           string `json:"quote"`
	Author          string `json:"author"`
	QuoteServedBy   string `json:"quoteServedBy"`
	Count           int64  `json:"count"`
	CounterServedBy string `json:"counterServedBy"`
	// ClientID is the identity the mesh authenticated for the caller of this
	// front end (header conduit-client-id), empty when not meshed.
	ClientID string `json:"clientId,omitempty"`
}

var page = template.Must(template.New("page").Parse(`<!doctype html>
<html><head><title>Conduit demo</title></head>
<body><h1>Conduit demo</h1>
{{if .Err}}<p style="color:#b00">{{.Err}}</p>{{else}}<blockquote>{{.A.Quote}}<br>— {{.A.Author}}</blockquote>
<p>Quote from <code>{{.A.QuoteServedBy}}</code>, visit #{{.A.Count}} counted by <code>{{.A.CounterServedBy}}</code>.</p>{{end}}
</body></html>`))

func (s *Web) answer(r *http.Request) (*Answer, error) {
	q, err := s.Quotes.Get(r.Context(), &demov1.GetQuoteRequest{Index: s.next.Add(1)})
	if err != nil {
		return nil, fmt.Errorf("quotes: %w", err)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, s.CounterURL+"/count", nil)
	if err != nil {
		return nil, fmt.Errorf("counter: %w", err)
	}
	resp, err := s.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("counter: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("counter: %s: %s", resp.Status, b)
	}
	var c struct {
		Count    int64  `json:"count"`
		ServedBy string `json:"servedBy"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
		return nil, fmt.Errorf("counter: decode: %w", err)
	}
	return &Answer{Quote: q.GetText(), Author: q.GetAuthor(), QuoteServedBy: q.GetServedBy(), Count: c.Count, CounterServedBy: c.ServedBy, ClientID: r.Header.Get("conduit-client-id")}, nil
}

// ServeHTTP implements http.Handler.
func (s *Web) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/api/quote":
		a, err := s.answer(r)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(a)
	case "/":
		a, err := s.answer(r)
		data := struct {
			A   *Answer
			Err error
		}{a, err}
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = page.Execute(w, data)
	default:
		http.NotFound(w, r)
	}
}
