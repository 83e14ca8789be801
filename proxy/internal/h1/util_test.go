package h1

import (
	"bytes"
	"io"
	"net/http/httputil"
)

func httputilChunked(b []byte) io.Reader { return httputil.NewChunkedReader(bytes.NewReader(b)) }
