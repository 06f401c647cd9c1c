package echoupstream

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/coder/websocket"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/net/http/httpguts"
)

// BasicEchoUser is the user name of the Basic credential X-Basic-URL
// echoes.
const BasicEchoUser = "user"

// TokenOf returns the token an endpoint transforms for the Authorization
// value a: the text after "Bearer " or "Token ", the password of a Basic
// credential, or a itself.
func TokenOf(a string) string {
	scheme, rest, ok := strings.Cut(a, " ")
	if !ok {
		return a
	}
	switch strings.ToLower(scheme) {
	case "bearer", "token":
		return rest
	case "basic":
		dec, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return rest
		}
		if _, pass, ok := strings.Cut(string(dec), ":"); ok {
			return pass
		}
		return string(dec)
	}
	return a
}

// HeaderEcho returns the response headers /headers sends for token t:
// X-Upper, X-Lower, X-B64 (std), X-B64-Raw (unpadded), X-B64-URL, X-Hex,
// X-Basic-URL (url.QueryEscape of base64 "user:"+t), X-Split (two values,
// t's halves), X-Partial (t's first 16 bytes) and, when t is a valid
// header name token, a header named "X-"+t.
func HeaderEcho(t string) http.Header {
	h := http.Header{}
	set := func(k, v string) { h[k] = []string{v} }
	set("X-Upper", strings.ToUpper(t))
	set("X-Lower", strings.ToLower(t))
	set("X-B64", base64.StdEncoding.EncodeToString([]byte(t)))
	set("X-B64-Raw", base64.RawStdEncoding.EncodeToString([]byte(t)))
	set("X-B64-Url", base64.URLEncoding.EncodeToString([]byte(t)))
	set("X-Hex", hex.EncodeToString([]byte(t)))
	set("X-Basic-Url", url.QueryEscape(base64.StdEncoding.EncodeToString([]byte(BasicEchoUser+":"+t))))
	h["X-Split"] = []string{t[:len(t)/2], t[len(t)/2:]}
	set("X-Partial", t[:min(16, len(t))])
	if httpguts.ValidHeaderFieldName("X-" + t) {
		h["X-"+t] = []string{"1"} // not canonicalised: the name is sent as is
	}
	return h
}

func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/json", s.serveJSON)
	mux.HandleFunc("/html", serveHTML)
	mux.HandleFunc("/chunked", serveChunked)
	mux.HandleFunc("/sse", serveSSE)
	mux.HandleFunc("/sse-first", serveSSEFirst)
	for _, enc := range []string{"gzip", "deflate", "deflate-raw", "br", "zstd"} {
		mux.HandleFunc("/"+enc, func(w http.ResponseWriter, r *http.Request) { serveEncoded(w, r, enc) })
	}
	mux.HandleFunc("/unknown-encoding", serveUnknownEncoding)
	mux.HandleFunc("/headers", serveHeaders)
	mux.HandleFunc("/trailers", serveTrailers)
	mux.HandleFunc("/ws", s.serveWebSocket)
	mux.HandleFunc("/ws-raw", s.serveRawWebSocket)
	mux.HandleFunc("/upgrade-h2c", serveH2CUpgrade)
	mux.HandleFunc("/ws-bad-accept", serveBadAccept)
	mux.HandleFunc("/slow-head", serveSlowHead)
	mux.HandleFunc("/big-head", serveBigHead)
	mux.HandleFunc("/down", serveDown)
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Recorded as soon as the head arrived, then completed with the
		// body: a request whose body is cut still counts as received.
		i := s.record(Request{
			Method:     r.Method,
			Path:       r.URL.Path,
			RequestURI: r.RequestURI,
			Host:       r.Host,
			Proto:      r.Proto,
			Header:     r.Header.Clone(),
		})
		var body bytes.Buffer
		n, err := io.Copy(&body, io.LimitReader(r.Body, maxRecordedBody))
		if err == nil {
			var rest int64
			rest, err = io.Copy(io.Discard, r.Body)
			n += rest
		}
		s.completeRecord(i, body.Bytes(), n, r.Trailer.Clone(), err)
		mux.ServeHTTP(w, r)
	})
}

func auth(r *http.Request) string { return r.Header.Get("Authorization") }

func jsonEcho(r *http.Request) []byte {
	b, _ := json.Marshal(map[string]string{"auth": auth(r)})
	return b
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(jsonEcho(r))
}

func serveHTML(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	fmt.Fprintf(w, "<!doctype html>\n<html><body><p>Your credential: %s</p></body></html>\n", html.EscapeString(auth(r)))
}

func flush(w http.ResponseWriter) {
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
}

func serveChunked(w http.ResponseWriter, r *http.Request) {
	a := auth(r)
	n, err := strconv.Atoi(r.URL.Query().Get("split"))
	if err != nil || n < 0 || n > len(a) {
		n = len(a) / 2
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "auth="+a[:n])
	flush(w)
	io.WriteString(w, a[n:]+"\n")
	flush(w)
}

// SSEDelay is the pause /sse makes after its first event.
const SSEDelay = 300 * time.Millisecond

func sseHead(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
}

func serveSSE(w http.ResponseWriter, r *http.Request) {
	a := auth(r)
	t := TokenOf(a)
	sseHead(w)
	io.WriteString(w, "data: hello\n\n")
	flush(w)
	select {
	case <-time.After(SSEDelay):
	case <-r.Context().Done():
		return
	}
	for _, ev := range []string{t[:len(t)/2], t[len(t)/2:], a} {
		io.WriteString(w, "data: "+ev+"\n\n")
		flush(w)
	}
}

// SSEFirstHold is how long /sse-first stays silent after its first event
// unless ?hold= gives another duration.
const SSEFirstHold = 5 * time.Second

func serveSSEFirst(w http.ResponseWriter, r *http.Request) {
	hold, err := time.ParseDuration(r.URL.Query().Get("hold"))
	if err != nil || hold < 0 {
		hold = SSEFirstHold
	}
	sseHead(w)
	io.WriteString(w, "data: hello\n\n")
	flush(w)
	select {
	case <-time.After(hold):
	case <-r.Context().Done():
	}
}

// Encode compresses b with the named Content-Encoding (gzip, deflate as
// zlib, deflate-raw as raw DEFLATE, br, zstd).
func Encode(enc string, b []byte) ([]byte, error) {
	var buf bytes.Buffer
	var w io.WriteCloser
	var err error
	switch enc {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "deflate":
		w = zlib.NewWriter(&buf)
	case "deflate-raw":
		w, err = flate.NewWriter(&buf, flate.DefaultCompression)
	case "br":
		w = brotli.NewWriter(&buf)
	case "zstd":
		w, err = zstd.NewWriter(&buf)
	default:
		return nil, fmt.Errorf("unknown encoding %q", enc)
	}
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(b); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Decode reverses Encode; "deflate" accepts zlib and raw DEFLATE.
func Decode(enc string, b []byte) ([]byte, error) {
	var r io.Reader
	switch enc {
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		r = zr
	case "deflate":
		zr, err := zlib.NewReader(bytes.NewReader(b))
		if err != nil {
			r = flate.NewReader(bytes.NewReader(b))
		} else {
			r = zr
		}
	case "deflate-raw":
		r = flate.NewReader(bytes.NewReader(b))
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		zr, err := zstd.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, err
		}
		defer zr.Close()
		r = zr
	default:
		return nil, fmt.Errorf("unknown encoding %q", enc)
	}
	return io.ReadAll(r)
}

func serveEncoded(w http.ResponseWriter, r *http.Request, enc string) {
	body, err := Encode(enc, jsonEcho(r))
	if err != nil {
		http.Error(w, "encode", http.StatusInternalServerError)
		return
	}
	if enc == "deflate-raw" {
		enc = "deflate" // raw DEFLATE under the name servers (wrongly) use for it
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Encoding", enc)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
}

// UnknownEncoding is the Content-Encoding /unknown-encoding declares.
const UnknownEncoding = "x-cork-test"

func serveUnknownEncoding(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Encoding", UnknownEncoding)
	io.WriteString(w, "auth="+auth(r)+"\n")
}

func serveHeaders(w http.ResponseWriter, r *http.Request) {
	for k, v := range HeaderEcho(TokenOf(auth(r))) {
		w.Header()[k] = v
	}
	io.WriteString(w, "headers\n")
}

func serveTrailers(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Trailer", "X-Echo")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "body before the trailer\n")
	flush(w)
	w.Header().Set("X-Echo", auth(r))
}

// WebSocketFragment returns where /ws splits its fragmented message
// "frag: "+a: inside the token.
func WebSocketFragment(a string) int {
	t := TokenOf(a)
	if i := strings.Index(a, t); i >= 0 && len(t) > 1 {
		return len("frag: ") + i + len(t)/2
	}
	return len("frag: ") + len(a)/2
}

func (s *Server) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify:   true,
		CompressionMode:      websocket.CompressionContextTakeover, // only when the client offers it
		CompressionThreshold: 1,
	})
	if err != nil {
		return
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	a := auth(r)
	if err := c.Write(ctx, websocket.MessageText, []byte("auth: "+a)); err != nil {
		return
	}
	if err := c.Write(ctx, websocket.MessageBinary, []byte(a)); err != nil {
		return
	}
	frag := "frag: " + a
	k := WebSocketFragment(a)
	mw, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		return
	}
	if _, err := mw.Write([]byte(frag[:k])); err != nil {
		return
	}
	if _, err := mw.Write([]byte(frag[k:])); err != nil {
		return
	}
	if err := mw.Close(); err != nil {
		return
	}
	for {
		typ, data, err := c.Read(ctx)
		if err != nil {
			return
		}
		s.recordMessage(Message{Binary: typ == websocket.MessageBinary, Data: data})
		if err := c.Write(ctx, typ, data); err != nil {
			return
		}
	}
}

const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey is the Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// hijack takes over the connection, writes head and returns the
// connection with a deadline.
func hijack(w http.ResponseWriter, head string) (net.Conn, io.Reader, bool) {
	hj, ok := w.(http.Hijacker)
	if !ok {
		http.Error(w, "no hijack over HTTP/2", http.StatusHTTPVersionNotSupported)
		return nil, nil, false
	}
	conn, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, false
	}
	_ = conn.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(conn, head); err != nil {
		conn.Close()
		return nil, nil, false
	}
	return conn, brw.Reader, true
}

func (s *Server) serveRawWebSocket(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "want a WebSocket handshake", http.StatusBadRequest)
		return
	}
	conn, br, ok := hijack(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+AcceptKey(key)+"\r\n\r\n")
	if !ok {
		return
	}
	defer conn.Close()
	buf := make([]byte, 4096)
	for {
		n, err := br.Read(buf)
		s.recordRaw(buf[:n])
		if err != nil {
			return
		}
	}
}

func serveH2CUpgrade(w http.ResponseWriter, _ *http.Request) {
	conn, br, ok := hijack(w, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	if !ok {
		return
	}
	defer conn.Close()
	io.Copy(io.Discard, br)
}

func serveBadAccept(w http.ResponseWriter, r *http.Request) {
	wrong := AcceptKey(r.Header.Get("Sec-WebSocket-Key") + "x")
	conn, br, ok := hijack(w, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+wrong+"\r\n\r\n")
	if !ok {
		return
	}
	defer conn.Close()
	io.Copy(io.Discard, br)
}

func serveSlowHead(w http.ResponseWriter, r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("d"))
	if err != nil {
		d = 3 * time.Second
	}
	select {
	case <-time.After(d):
	case <-r.Context().Done():
		return
	}
	io.WriteString(w, "slow ok")
}

func serveBigHead(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 || n > 64<<20 {
		http.Error(w, "want n in bytes", http.StatusBadRequest)
		return
	}
	line := strings.Repeat("a", 1000)
	for i, size := 0, 0; size < n; i++ {
		k := fmt.Sprintf("X-Pad-%05d", i)
		w.Header()[k] = []string{line}
		size += len(k) + len(": ") + len(line) + len("\r\n")
	}
	io.WriteString(w, "big ok")
}

// downPattern is the byte pattern /down repeats.
var downPattern = bytes.Repeat([]byte("0123456789abcdef"), 2048)

func serveDown(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
	if err != nil || n < 0 {
		http.Error(w, "want n in bytes", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
	for n > 0 {
		chunk := downPattern[:min(int64(len(downPattern)), n)]
		if _, err := w.Write(chunk); err != nil {
			return
		}
		n -= int64(len(chunk))
	}
}
