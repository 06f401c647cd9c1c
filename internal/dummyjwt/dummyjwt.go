package dummyjwt

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Header is the JOSE header of every minted token. RS256 and a key id make
// the token look like the tokens the real issuers mint; nothing verifies it.
const Header = `{"alg":"RS256","typ":"JWT","kid":"cork-dummy"}`

// SignatureSize is the size in bytes of the random signature part: that of
// an RS256 signature with a 2048-bit key.
const SignatureSize = 256

// ErrMalformed is wrapped by every error Parse returns.
var ErrMalformed = errors.New("malformed JWT")

var enc = base64.RawURLEncoding.Strict()

// Mint returns a token carrying claims, with Header and SignatureSize
// random bytes from r as its signature. If r is nil, crypto/rand is used.
func Mint(claims map[string]any, r io.Reader) (string, error) {
	if r == nil {
		r = rand.Reader
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("mint JWT: encode claims: %w", err)
	}
	sig := make([]byte, SignatureSize)
	if _, err := io.ReadFull(r, sig); err != nil {
		return "", fmt.Errorf("mint JWT: read random signature: %w", err)
	}
	return enc.EncodeToString([]byte(Header)) + "." +
		enc.EncodeToString(payload) + "." +
		enc.EncodeToString(sig), nil
}

// Parse checks that token has exactly three non-empty parts, each
// base64url without padding, and that its header and payload decode
// (strictly) to JSON objects. It returns the payload's claims. The signature is not checked.
// Every error wraps ErrMalformed and describes the shape, never the
// content, of token.
func Parse(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: want 3 parts, got %d", ErrMalformed, len(parts))
	}
	names := [3]string{"header", "payload", "signature"}
	var decoded [3][]byte
	for i, p := range parts {
		if err := checkAlphabet(p); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, names[i], err)
		}
		if i == 2 {
			break // nobody decodes the signature; its alphabet is enough
		}
		b, err := enc.DecodeString(p)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: not base64url: bad length or trailing bits", ErrMalformed, names[i])
		}
		decoded[i] = b
	}
	if err := checkObject(decoded[0]); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	claims, err := decodeObject(decoded[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	return claims, nil
}

// checkAlphabet accepts non-empty base64url without padding. It checks
// the alphabet itself because the decoder would skip '\r' and '\n', and to
// say "padding" rather than "illegal data".
func checkAlphabet(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '=':
			return errors.New("base64url padding is not allowed")
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return fmt.Errorf("not base64url: invalid character at offset %d", i)
		}
	}
	return nil
}

func checkObject(b []byte) error {
	_, err := decodeObject(b)
	return err
}

// decodeObject decodes a JSON object without echoing any of it in errors.
func decodeObject(b []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil || m == nil {
		return nil, errors.New("not a JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON object")
	}
	return m, nil
}
