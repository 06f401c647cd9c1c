package wsrelay

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ErrHandshake is wrapped by every error CheckHandshake returns.
var ErrHandshake = errors.New("websocket handshake")

// ErrExtension is wrapped by errors about a Sec-WebSocket-Extensions value,
// from CheckHandshake and Config.Validate.
var ErrExtension = errors.New("websocket extension")

// websocketGUID is the fixed key suffix of RFC 6455 section 1.3.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey returns the Sec-WebSocket-Accept value for a Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// IsUpgrade reports whether req asks for a WebSocket upgrade (a GET with
// "Connection: upgrade" and "websocket" among its Upgrade tokens), and
// separately whether it asks for anything else to be switched to: an Upgrade
// token other than websocket, or an Upgrade or "Connection: upgrade" header on
// a request that is not a WebSocket upgrade. A proxy should refuse the latter;
// a request may report both.
func IsUpgrade(req *http.Request) (websocket, other bool) {
	connUpgrade := headerHasToken(req.Header, "Connection", "upgrade")
	upgradeHeader := false
	for _, v := range req.Header.Values("Upgrade") {
		for tok := range strings.SplitSeq(v, ",") {
			tok = strings.TrimSpace(tok)
			switch {
			case tok == "":
			case strings.EqualFold(tok, "websocket"):
				websocket, upgradeHeader = true, true
			default:
				other, upgradeHeader = true, true
			}
		}
	}
	websocket = websocket && connUpgrade && req.Method == http.MethodGet
	if (upgradeHeader || connUpgrade) && !websocket {
		other = true
	}
	return websocket, other
}

// CheckHandshake validates the upstream's answer to a client's WebSocket
// handshake: status 101, "Upgrade: websocket", "Connection" containing
// "upgrade", Sec-WebSocket-Accept matching the request's Sec-WebSocket-Key, a
// subprotocol (if any) that the client offered, and Sec-WebSocket-Extensions
// naming only permessage-deflate, offered by the client, with parameters that
// fit one of the client's offers. The error wraps ErrHandshake (and
// ErrExtension for extension problems) and names what is wrong, never a header
// value.
func CheckHandshake(req *http.Request, resp *http.Response) error {
	if resp.StatusCode != http.StatusSwitchingProtocols {
		return fmt.Errorf("%w: status %d, want 101", ErrHandshake, resp.StatusCode)
	}
	if !headerHasToken(resp.Header, "Upgrade", "websocket") {
		return fmt.Errorf("%w: response Upgrade is not websocket", ErrHandshake)
	}
	if !headerHasToken(resp.Header, "Connection", "upgrade") {
		return fmt.Errorf("%w: response Connection has no upgrade", ErrHandshake)
	}
	key := req.Header.Get("Sec-WebSocket-Key")
	if key == "" {
		return fmt.Errorf("%w: request has no Sec-WebSocket-Key", ErrHandshake)
	}
	if got := resp.Header.Values("Sec-WebSocket-Accept"); len(got) != 1 || got[0] != AcceptKey(key) {
		return fmt.Errorf("%w: Sec-WebSocket-Accept does not match the key", ErrHandshake)
	}
	if err := checkSubprotocol(req, resp); err != nil {
		return err
	}
	offers, err := parseExtensionHeader(strings.Join(req.Header.Values("Sec-WebSocket-Extensions"), ","))
	if err != nil {
		// The client's offer is not ours to judge beyond what we accept.
		offers = nil
	}
	accepted, err := parseExtensionHeader(strings.Join(resp.Header.Values("Sec-WebSocket-Extensions"), ","))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	switch {
	case len(accepted) == 0:
		return nil
	case len(accepted) > 1:
		return fmt.Errorf("%w: %w: more than one extension accepted", ErrHandshake, ErrExtension)
	}
	ext := accepted[0]
	if !strings.EqualFold(ext.name, "permessage-deflate") {
		return fmt.Errorf("%w: %w: unsupported extension accepted", ErrHandshake, ErrExtension)
	}
	got, err := parseDeflate(ext)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrHandshake, err)
	}
	offered := false
	for _, o := range offers {
		if !strings.EqualFold(o.name, "permessage-deflate") {
			continue
		}
		offered = true
		if offerAllows(o, got) {
			return nil
		}
	}
	if !offered {
		return fmt.Errorf("%w: %w: permessage-deflate accepted but not offered", ErrHandshake, ErrExtension)
	}
	return fmt.Errorf("%w: %w: permessage-deflate parameters fit no offer", ErrHandshake, ErrExtension)
}

func checkSubprotocol(req *http.Request, resp *http.Response) error {
	chosen := resp.Header.Values("Sec-WebSocket-Protocol")
	switch {
	case len(chosen) == 0:
		return nil
	case len(chosen) > 1 || strings.Contains(chosen[0], ","):
		return fmt.Errorf("%w: more than one subprotocol chosen", ErrHandshake)
	}
	want := strings.TrimSpace(chosen[0])
	for _, v := range req.Header.Values("Sec-WebSocket-Protocol") {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(tok) == want {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: subprotocol chosen that the client did not offer", ErrHandshake)
}

// offerAllows reports whether a client's permessage-deflate offer permits the
// parameters the server answered with (RFC 7692 section 7.1).
func offerAllows(offer extension, got deflateParams) bool {
	op, err := parseOffer(offer)
	if err != nil {
		return false
	}
	if got.serverMaxBits != 0 && op.serverMaxBits != 0 && got.serverMaxBits > op.serverMaxBits {
		return false
	}
	if got.clientMaxBits != 0 {
		if !op.clientMaxBitsOffered {
			return false
		}
		if op.clientMaxBits != 0 && got.clientMaxBits > op.clientMaxBits {
			return false
		}
	}
	return true
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), token) {
				return true
			}
		}
	}
	return false
}

// extension is one element of a Sec-WebSocket-Extensions list.
type extension struct {
	name   string
	params []extParam
}

type extParam struct {
	name     string
	value    string
	hasValue bool
}

// parseExtensionHeader splits a Sec-WebSocket-Extensions value into its
// extensions. Parameter values may be quoted; quoted commas are not supported
// (no extension we accept has them).
func parseExtensionHeader(s string) ([]extension, error) {
	var exts []extension
	for elem := range strings.SplitSeq(s, ",") {
		if strings.TrimSpace(elem) == "" {
			continue
		}
		parts := strings.Split(elem, ";")
		name := strings.TrimSpace(parts[0])
		if !isToken(name) {
			return nil, fmt.Errorf("%w: malformed extension name", ErrExtension)
		}
		ext := extension{name: name}
		for _, p := range parts[1:] {
			k, v, hasValue := strings.Cut(p, "=")
			k = strings.TrimSpace(k)
			if !isToken(k) {
				return nil, fmt.Errorf("%w: malformed parameter", ErrExtension)
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			if hasValue && !isToken(v) {
				return nil, fmt.Errorf("%w: malformed parameter value", ErrExtension)
			}
			ext.params = append(ext.params, extParam{name: k, value: v, hasValue: hasValue})
		}
		exts = append(exts, ext)
	}
	return exts, nil
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`()<>@,;:\"/[]?={}`, c) >= 0 {
			return false
		}
	}
	return true
}

// deflateParams is a negotiated permessage-deflate configuration. The zero
// value means the extension is off.
type deflateParams struct {
	enabled         bool
	serverNoContext bool // server_no_context_takeover
	clientNoContext bool // client_no_context_takeover
	serverMaxBits   int  // server_max_window_bits; 0 = not given (15)
	clientMaxBits   int  // client_max_window_bits; 0 = not given (15)
}

// parseExtensions parses the Sec-WebSocket-Extensions of a 101 response.
func parseExtensions(s string) (deflateParams, error) {
	exts, err := parseExtensionHeader(s)
	if err != nil {
		return deflateParams{}, err
	}
	switch {
	case len(exts) == 0:
		return deflateParams{}, nil
	case len(exts) > 1:
		return deflateParams{}, fmt.Errorf("%w: more than one extension", ErrExtension)
	case !strings.EqualFold(exts[0].name, "permessage-deflate"):
		return deflateParams{}, fmt.Errorf("%w: unsupported extension", ErrExtension)
	}
	return parseDeflate(exts[0])
}

// parseDeflate checks the parameters of a permessage-deflate response.
func parseDeflate(ext extension) (deflateParams, error) {
	p := deflateParams{enabled: true}
	seen := map[string]bool{}
	for _, kv := range ext.params {
		name := strings.ToLower(kv.name)
		if seen[name] {
			return deflateParams{}, fmt.Errorf("%w: permessage-deflate parameter %s repeated", ErrExtension, name)
		}
		seen[name] = true
		switch name {
		case "server_no_context_takeover", "client_no_context_takeover":
			if kv.hasValue {
				return deflateParams{}, fmt.Errorf("%w: permessage-deflate parameter %s takes no value", ErrExtension, name)
			}
			if name == "server_no_context_takeover" {
				p.serverNoContext = true
			} else {
				p.clientNoContext = true
			}
		case "server_max_window_bits", "client_max_window_bits":
			bits, err := windowBits(kv)
			if err != nil || bits == 0 {
				return deflateParams{}, fmt.Errorf("%w: permessage-deflate parameter %s needs a value from 8 to 15", ErrExtension, name)
			}
			if name == "server_max_window_bits" {
				p.serverMaxBits = bits
			} else {
				p.clientMaxBits = bits
			}
		default:
			return deflateParams{}, fmt.Errorf("%w: unknown permessage-deflate parameter", ErrExtension)
		}
	}
	return p, nil
}

// deflateOffer is a client's permessage-deflate offer.
type deflateOffer struct {
	serverMaxBits        int
	clientMaxBits        int
	clientMaxBitsOffered bool
}

func parseOffer(ext extension) (deflateOffer, error) {
	var o deflateOffer
	for _, kv := range ext.params {
		switch strings.ToLower(kv.name) {
		case "server_no_context_takeover", "client_no_context_takeover":
		case "server_max_window_bits":
			bits, err := windowBits(kv)
			if err != nil || bits == 0 {
				return o, fmt.Errorf("%w: bad server_max_window_bits offer", ErrExtension)
			}
			o.serverMaxBits = bits
		case "client_max_window_bits":
			bits, err := windowBits(kv)
			if err != nil {
				return o, err
			}
			o.clientMaxBits, o.clientMaxBitsOffered = bits, true
		default:
			return o, fmt.Errorf("%w: unknown permessage-deflate parameter", ErrExtension)
		}
	}
	return o, nil
}

// windowBits returns a max_window_bits value, 0 when it has none.
func windowBits(kv extParam) (int, error) {
	if !kv.hasValue {
		return 0, nil
	}
	n, err := strconv.Atoi(kv.value)
	if err != nil || n < 8 || n > 15 || len(kv.value) > 2 {
		return 0, fmt.Errorf("%w: window bits out of range", ErrExtension)
	}
	return n, nil
}
