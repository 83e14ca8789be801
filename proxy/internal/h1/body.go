package h1

import (
	"bufio"
	"errors"
	"fmt"
	"io"

	"github.com/conduit-mesh/conduit/proxy/internal/netx"
)

// maxChunkLine bounds a chunk-size line (with extensions) and a trailer field.
const maxChunkLine = 4 << 10

var errBadChunk = errors.New("h1: malformed chunked body")

// fill returns the bytes buffered in br, reading (and blocking) only when
// none are; w is flushed before blocking, so nothing waits in it while the
// peer is slow, and everything available goes out in one write.
func fill(w *bufio.Writer, br *bufio.Reader) ([]byte, error) {
	if w != nil && br.Buffered() == 0 {
		if err := w.Flush(); err != nil {
			return nil, &writeError{err}
		}
	}
	if _, err := br.Peek(1); err != nil {
		return nil, err
	}
	return br.Peek(br.Buffered())
}

// writeError marks a failure writing to the destination (as opposed to
// reading the source).
type writeError struct{ err error }

func (e *writeError) Error() string { return e.err.Error() }
func (e *writeError) Unwrap() error { return e.err }

// flushBeforeBlock flushes w when it holds something and the next Read of
// r may block (netx.MayBlock): a head (or data) the source has sent leaves now, not with
// the next bytes the source sends, however late; when they are already
// there, both leave in one write.
func flushBeforeBlock(w *bufio.Writer, r io.Reader) error {
	if w.Buffered() > 0 && netx.MayBlock(r) {
		if err := w.Flush(); err != nil {
			return &writeError{err}
		}
	}
	return nil
}

// copyN is io.CopyN(w, r, n) without its allocation (the io.LimitedReader
// it hands to w.ReadFrom): r reads into w's free space, and w is flushed
// before a Read that may block (flushBeforeBlock). As io.CopyN, it returns
// io.EOF when r ends before n bytes.
func copyN(w *bufio.Writer, r io.Reader, n int64) (int64, error) {
	var done int64
	for empty := 0; done < n; {
		if w.Available() == 0 {
			if err := w.Flush(); err != nil {
				return done, err
			}
		}
		if err := flushBeforeBlock(w, r); err != nil {
			return done, err
		}
		buf := w.AvailableBuffer()
		buf = buf[:min(int64(cap(buf)), n-done)]
		m, err := r.Read(buf)
		if m > 0 {
			_, _ = w.Write(buf[:m]) // into its own free space: no write
			done += int64(m)
			empty = 0
		}
		switch {
		case err == io.EOF && done < n:
			return done, io.EOF
		case err != nil && err != io.EOF:
			return done, err
		case m == 0 && err == nil:
			if empty++; empty >= 100 {
				return done, io.ErrNoProgress
			}
		}
	}
	return done, nil
}

// copyFixed copies exactly n bytes of body from br to w.
func copyFixed(w *bufio.Writer, br *bufio.Reader, n int64) (int64, error) {
	var done int64
	for done < n {
		b, err := fill(w, br)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return done, err
		}
		if int64(len(b)) > n-done {
			b = b[:n-done]
		}
		if _, err := w.Write(b); err != nil {
			return done, &writeError{err}
		}
		_, _ = br.Discard(len(b))
		done += int64(len(b))
	}
	return done, nil
}

// copyUntilEOF copies the body until the source closes.
func copyUntilEOF(w *bufio.Writer, br *bufio.Reader) (int64, error) {
	var done int64
	for {
		b, err := fill(w, br)
		if err == io.EOF {
			return done, nil
		}
		if err != nil {
			return done, err
		}
		if _, err := w.Write(b); err != nil {
			return done, &writeError{err}
		}
		_, _ = br.Discard(len(b))
		done += int64(len(b))
	}
}

// copyChunked copies a chunked body as it is framed (chunk extensions and
// trailer fields included, but those named in drop), checking the framing;
// it returns the data bytes.
func copyChunked(w *bufio.Writer, br *bufio.Reader, drop []string) (int64, error) {
	var done int64
	for {
		line, err := chunkLine(w, br, true)
		if err != nil {
			return done, err
		}
		size, digits, ext, err := splitChunkSize(line)
		if err != nil {
			return done, err
		}
		// The size and its extensions, without the whitespace RFC 9112
		// allows between them (BWS), which net/http's chunked reader (a Go
		// client's) refuses: "5 ;x" goes as "5;x".
		w.Write(digits)
		w.Write(ext)
		if _, err := w.WriteString("\r\n"); err != nil {
			return done, &writeError{err}
		}
		if size == 0 {
			return done, copyTrailer(w, br, drop)
		}
		n, err := copyFixed(w, br, size)
		done += n
		if err != nil {
			return done, err
		}
		end, err := chunkLine(w, br, true)
		if err != nil {
			return done, err
		}
		if len(end) != 0 {
			return done, fmt.Errorf("%w: chunk data longer than its size", errBadChunk)
		}
		if _, err := w.WriteString("\r\n"); err != nil {
			return done, &writeError{err}
		}
	}
}

// chunkLine reads one line of the chunked framing, without its line ending,
// which must be CRLF when crlf is set (chunk-size and chunk-data lines: RFC
// 9112 erratum 7633; trailer fields may end with a bare LF, as header
// fields). The returned slice is valid until the next read from br.
func chunkLine(w *bufio.Writer, br *bufio.Reader, crlf bool) ([]byte, error) {
	if w != nil && br.Buffered() == 0 {
		if err := w.Flush(); err != nil {
			return nil, &writeError{err}
		}
	}
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: line longer than %d bytes", errBadChunk, br.Size())
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if len(line) > maxChunkLine {
		return nil, fmt.Errorf("%w: line longer than %d bytes", errBadChunk, maxChunkLine)
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	} else if crlf {
		return nil, fmt.Errorf("%w: line ends with a bare LF", errBadChunk)
	}
	for _, c := range line {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return nil, fmt.Errorf("%w: control character", errBadChunk)
		}
	}
	return line, nil
}

// chunkSize parses the hexadecimal size at the start of a chunk-size line;
// what follows it may only be chunk extensions.
func chunkSize(line []byte) (int64, error) {
	n, _, _, err := splitChunkSize(line)
	return n, err
}

// splitChunkSize parses a chunk-size line (without its line ending) into
// the size, its hex digits and its extensions (from their ";", or empty),
// leaving out the whitespace between the two.
func splitChunkSize(line []byte) (size int64, digits, ext []byte, err error) {
	var n int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i == 15 {
			return 0, nil, nil, fmt.Errorf("%w: chunk size too large", errBadChunk)
		}
		n = n<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, nil, nil, fmt.Errorf("%w: no chunk size", errBadChunk)
	}
	tail := line[i:]
	for len(tail) > 0 && (tail[0] == ' ' || tail[0] == '\t') {
		tail = tail[1:]
	}
	if len(tail) > 0 && tail[0] != ';' {
		return 0, nil, nil, fmt.Errorf("%w: bad chunk size", errBadChunk)
	}
	return n, line[:i], tail, nil
}

// copyTrailer copies the trailer section and the final blank line, but the
// fields named in drop. A field is one line: trailerLines refuses obs-fold,
// so no continuation of a dropped field can be taken for another one.
func copyTrailer(w *bufio.Writer, br *bufio.Reader, drop []string) error {
	err := trailerLines(w, br, func(line []byte, colon int) error {
		if len(drop) > 0 && droppedTrailer(drop, line[:colon]) {
			return nil
		}
		w.Write(line)
		if _, err := w.WriteString("\r\n"); err != nil {
			return &writeError{err}
		}
		return nil
	})
	if err != io.EOF {
		return err
	}
	if _, err := w.WriteString("\r\n"); err != nil {
		return &writeError{err}
	}
	return nil
}
