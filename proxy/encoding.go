package proxy

import (
	"bufio"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"io"
	"net/http"
	"strings"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

// Response bodies of routed hosts are scrubbed of real tokens (scrub.go),
// which needs them in clear: a body in a content coding cork can decode is
// decoded, scrubbed and sent on as identity; one in any other coding cannot
// be scrubbed and is refused (ReasonUnscrubbable) unless every route of the
// host says `unscrubbable: pass`. Requests to routed hosts offer only the
// codings cork decodes, so a well-behaved upstream never sends another.

// decodableCodings are the content codings cork can decode, as offered in
// Accept-Encoding.
var decodableCodings = []string{"gzip", "x-gzip", "deflate", "br", "zstd", "identity"}

// filterAcceptEncoding keeps, in h's Accept-Encoding, only the codings cork
// can decode (with their q-values); none left removes the header, so the
// upstream answers in identity.
func filterAcceptEncoding(h http.Header) {
	vals := h.Values("Accept-Encoding")
	if len(vals) == 0 {
		return
	}
	var keep []string
	for _, v := range vals {
		for _, part := range strings.Split(v, ",") {
			coding, _, _ := strings.Cut(strings.TrimSpace(part), ";")
			for _, c := range decodableCodings {
				if strings.EqualFold(strings.TrimSpace(coding), c) {
					keep = append(keep, strings.TrimSpace(part))
					break
				}
			}
		}
	}
	if len(keep) == 0 {
		h.Del("Accept-Encoding")
		return
	}
	h.Set("Accept-Encoding", strings.Join(keep, ", "))
}

// contentCodings returns the codings of h's Content-Encoding in the order
// they were applied, without identity; ok is false if one is unknown.
func contentCodings(h http.Header) (codings []string, ok bool) {
	for _, v := range h.Values("Content-Encoding") {
		for _, c := range strings.Split(v, ",") {
			c = strings.ToLower(strings.TrimSpace(c))
			switch c {
			case "", "identity":
			case "gzip", "x-gzip", "deflate", "br", "zstd":
				codings = append(codings, c)
			default:
				return nil, false
			}
		}
	}
	return codings, true
}

// decodeBody returns body decoded from codings (applied in that order) and
// a function that releases the decoders; errors surface from Read. Each
// decoder starts on the first Read, so that one that reads a header first
// does not hold back the response head.
func decodeBody(body io.Reader, codings []string) (io.Reader, func()) {
	var closers []func()
	for i := len(codings) - 1; i >= 0; i-- {
		var open func(io.Reader) (io.Reader, error)
		switch codings[i] {
		case "gzip", "x-gzip":
			open = func(r io.Reader) (io.Reader, error) { return gzip.NewReader(r) }
		case "deflate":
			open = openDeflate
		case "br":
			open = func(r io.Reader) (io.Reader, error) { return brotli.NewReader(r), nil }
		case "zstd":
			open = func(r io.Reader) (io.Reader, error) {
				d, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
				if err != nil {
					return nil, err
				}
				closers = append(closers, d.Close)
				return d, nil
			}
		}
		body = &lazyReader{open: open, src: body}
	}
	return body, func() {
		for _, c := range closers {
			c()
		}
	}
}

// openDeflate opens an HTTP "deflate" body: zlib as RFC 9110 says, or the
// raw deflate some servers send instead.
func openDeflate(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	h, err := br.Peek(2)
	if err != nil {
		return nil, err
	}
	if h[0]&0x0f == 8 && (uint16(h[0])<<8|uint16(h[1]))%31 == 0 {
		return zlib.NewReader(br)
	}
	return flate.NewReader(br), nil
}

// lazyReader opens its decoder on the first Read, so that a decoder that
// reads a header does not block the response head.
type lazyReader struct {
	open func(io.Reader) (io.Reader, error)
	src  io.Reader
	r    io.Reader
}

func (l *lazyReader) Read(p []byte) (int, error) {
	if l.r == nil {
		r, err := l.open(l.src)
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			l.r = errReader{err}
		} else {
			l.r = r
		}
	}
	return l.r.Read(p)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// asIdentity fixes up the head of a response whose body cork decoded: no
// Content-Encoding, no length (it is streamed), no digest of the encoded
// form, and a weak ETag (the representation changed).
func asIdentity(resp *http.Response) {
	h := resp.Header
	h.Del("Content-Encoding")
	dropLength(resp)
	for _, k := range []string{"Content-Md5", "Digest", "Content-Digest", "Repr-Digest"} {
		h.Del(k)
	}
	if et := h.Get("Etag"); et != "" && !strings.HasPrefix(et, "W/") {
		h.Set("Etag", "W/"+et)
	}
}

// dropLength makes resp's body streamed (chunked to HTTP/1.1 clients).
func dropLength(resp *http.Response) {
	resp.Header.Del("Content-Length")
	resp.ContentLength = -1
}
