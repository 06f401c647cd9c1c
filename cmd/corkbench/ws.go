package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// wsMessage is the one text message the upstream's /ws sends after the
// upgrade.
const wsMessage = "cork-bench: first message"

// wsGUID is RFC 6455's key suffix for Sec-WebSocket-Accept.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

func wsAccept(key string) string {
	sum := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// serveWS completes a WebSocket upgrade, sends wsMessage at once (one
// unmasked text frame) and holds the connection until the client hangs up.
func (u *upstream) serveWS(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Sec-WebSocket-Key")
	if key == "" || !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		http.Error(w, "websocket upgrade expected", http.StatusBadRequest)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "hijack", http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", wsAccept(key))
	brw.WriteByte(0x81) // FIN, text
	brw.WriteByte(byte(len(wsMessage)))
	brw.WriteString(wsMessage)
	if brw.Flush() != nil {
		return
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	io.Copy(io.Discard, conn)
}

// dialPath opens a new TLS connection to p's host through v, as a client
// that keeps no session cache would: TCP to the proxy and CONNECT (or TCP
// to the upstream), then a full TLS handshake. It returns the connection
// and the Host header to send.
func dialPath(v variant, p path) (net.Conn, string, error) {
	p = v.route(p)
	u, err := url.Parse(p.url)
	if err != nil {
		return nil, "", err
	}
	authority := u.Host
	if u.Port() == "" {
		authority = net.JoinHostPort(u.Hostname(), "443")
	}
	host := u.Host
	if p.host != "" {
		host = p.host
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	deadline := time.Now().Add(10 * time.Second)
	var c net.Conn
	if v.proxy == nil {
		addr := authority
		if to, ok := v.resolve[addr]; ok {
			addr = to
		}
		if c, err = d.Dial("tcp", addr); err != nil {
			return nil, "", err
		}
	} else {
		if c, err = d.Dial("tcp", v.proxy.Host); err != nil {
			return nil, "", err
		}
		c.SetDeadline(deadline)
		if err := connect(c, authority); err != nil {
			c.Close()
			return nil, "", err
		}
	}
	c.SetDeadline(deadline)
	serverName, _, err := net.SplitHostPort(host)
	if err != nil {
		serverName = host
	}
	tc := tls.Client(c, &tls.Config{RootCAs: v.roots, ServerName: serverName, NextProtos: []string{"http/1.1"}})
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, "", fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, host, nil
}

// connect asks the proxy on c for a tunnel to authority.
func connect(c net.Conn, authority string) error {
	if _, err := fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", authority, authority); err != nil {
		return err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil {
		return fmt.Errorf("CONNECT %s: %w", authority, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("CONNECT %s: status %d", authority, resp.StatusCode)
	}
	if br.Buffered() > 0 {
		return fmt.Errorf("CONNECT %s: bytes after the reply", authority)
	}
	return nil
}

// firstByte opens a new connection through v and returns the time from
// the start of the dial until the first WebSocket message's payload (ws)
// or the first SSE event has been read.
func firstByte(v variant, p path, ws bool) (time.Duration, error) {
	t0 := time.Now()
	c, host, err := dialPath(v, p)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var req bytes.Buffer
	key := base64.StdEncoding.EncodeToString([]byte("cork-bench-key16"))
	if ws {
		fmt.Fprintf(&req, "GET /ws HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n", host, key)
	} else {
		fmt.Fprintf(&req, "GET /sse?n=1&ms=0 HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n", host)
	}
	if p.auth {
		fmt.Fprintf(&req, "Authorization: Bearer %s\r\n", placeholder)
	}
	req.WriteString("User-Agent: cork-bench\r\n\r\n")
	if _, err := c.Write(req.Bytes()); err != nil {
		return 0, err
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if !ws {
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("SSE: status %d", resp.StatusCode)
		}
		body := bufio.NewReader(resp.Body)
		for {
			line, err := body.ReadString('\n')
			if err != nil {
				return 0, fmt.Errorf("SSE: %w", err)
			}
			if line == "\n" || line == "\r\n" {
				return time.Since(t0), nil
			}
		}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return 0, fmt.Errorf("WebSocket upgrade: status %d", resp.StatusCode)
	}
	if got := resp.Header.Get("Sec-WebSocket-Accept"); got != wsAccept(key) {
		return 0, fmt.Errorf("WebSocket upgrade: Sec-WebSocket-Accept %q", got)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return 0, fmt.Errorf("WebSocket frame: %w", err)
	}
	n := int(hdr[1] & 0x7f)
	if hdr[0] != 0x81 || hdr[1]&0x80 != 0 || n >= 126 {
		return 0, fmt.Errorf("WebSocket frame: header %x, want one unmasked short text frame", hdr)
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(br, msg); err != nil {
		return 0, fmt.Errorf("WebSocket frame: %w", err)
	}
	el := time.Since(t0)
	if string(msg) != wsMessage {
		return 0, errors.New("WebSocket frame: unexpected payload")
	}
	return el, nil
}
