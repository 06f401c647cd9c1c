package provision

import (
	"errors"
	"fmt"
	"io"
	"strings"
)

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// minRandom is the fewest random characters in a placeholder, so that even
// a placeholder for a short credential is unguessable and never equals it.
const minRandom = 24

// randomString returns n characters drawn uniformly from alphabet
// (at most 256 characters) with bytes from r.
func randomString(r io.Reader, alphabet string, n int) (string, error) {
	limit := 256 - 256%len(alphabet) // reject bytes that would bias the draw
	out := make([]byte, 0, n)
	buf := make([]byte, n+n/4+8)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("read random: %w", err)
		}
		for _, c := range buf {
			if int(c) < limit && len(out) < n {
				out = append(out, alphabet[int(c)%len(alphabet)])
			}
		}
	}
	return string(out), nil
}

// randomUUID returns a random (version 4) UUID.
func randomUUID(r io.Reader) (string, error) {
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return "", fmt.Errorf("read random: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:]), nil
}

// placeholderOr is placeholderLike when the real value is known, else
// prefix and n random alphanumerics.
func placeholderOr(r io.Reader, real string, prefixes []string, prefix string, n int) (string, error) {
	if real != "" {
		return placeholderLike(r, real, prefixes)
	}
	body, err := randomString(r, alnum, n)
	if err != nil {
		return "", err
	}
	return prefix + body, nil
}

// placeholderLike returns a random placeholder shaped like real: the
// longest of prefixes that real starts with, then random alphanumerics up
// to real's length (at least minRandom of them). Nothing but the prefix
// and the length is taken from real, and the result never equals it.
func placeholderLike(r io.Reader, real string, prefixes []string) (string, error) {
	prefix := ""
	for _, p := range prefixes {
		if strings.HasPrefix(real, p) && len(p) > len(prefix) {
			prefix = p
		}
	}
	n := max(len(real)-len(prefix), minRandom)
	for range 3 {
		body, err := randomString(r, alnum, n)
		if err != nil {
			return "", err
		}
		if s := prefix + body; s != real {
			return s, nil
		}
	}
	return "", errors.New("random source keeps producing the credential itself")
}
