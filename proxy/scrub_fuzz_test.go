package proxy

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
	"github.com/cork-sh/cork/proxy/scrub"
	"github.com/cork-sh/cork/resolve"
)

// chunkReader returns its data in reads of the sizes in cuts (cycled).
type chunkReader struct {
	data []byte
	cuts []byte
	i    int
}

func (r *chunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.cuts) > 0 {
		n = int(r.cuts[r.i%len(r.cuts)])%64 + 1
		r.i++
	}
	n = min(n, len(p), len(r.data))
	copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// FuzzResponseScrub is the response path without the network: a body
// holding a real token in one of the encodings a server reflects, maybe
// gzip-encoded, read across arbitrary boundaries, decoded and scrubbed as
// roundTrip does. The token never comes out, in any case.
func FuzzResponseScrub(f *testing.F) {
	f.Add("REAL-api-token-s3cr3t-7f1c", []byte(`{"a":"`), []byte(`"}`), uint8(0), "x-access-token", false, []byte{3, 1, 7})
	f.Add("ghp_0123456789abcdefABCDEF0123456789abcd", []byte("data: "), []byte("\n\n"), uint8(3), "", true, []byte{1})
	f.Add("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXNpZ25hdHVyZQ", []byte("<p>"), []byte("</p>"), uint8(5), "u", false, []byte{})
	f.Fuzz(func(t *testing.T, tok string, before, after []byte, form uint8, user string, gz bool, cuts []byte) {
		const ph = "cork-placeholder-000000000000"
		if len(tok) < 12 || len(tok) > 200 || resolve.CheckToken(tok) != nil || strings.ContainsAny(user, ":\r\n") {
			return
		}
		for i := 0; i+6 <= len(tok); i++ {
			if strings.Contains(ph, strings.ToLower(tok[i:i+6])) {
				return // a placeholder sharing a run with its token could spell it with its neighbours
			}
		}
		basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + tok))
		forms := []string{
			tok, strings.ToUpper(tok), strings.ToLower(tok), url.QueryEscape(tok),
			hex.EncodeToString([]byte(tok)), basic, strings.TrimRight(basic, "="), url.QueryEscape(basic),
			base64.RawURLEncoding.EncodeToString([]byte(user + tok)),
		}
		echo := forms[int(form)%len(forms)]
		body := append(append(append([]byte{}, before...), echo...), after...)
		pol, err := policy.New(policy.Policy{Slots: map[string]policy.Slot{"s": {Placeholder: ph}}})
		if err != nil {
			t.Fatal(err)
		}
		ts := newTokenState(resolve.Tokens{"s": resolve.NewSecret(tok)}, nil, pol)
		var src io.Reader = &chunkReader{data: body, cuts: cuts}
		release := func() {}
		if gz {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write(body)
			_ = zw.Close()
			src, release = decodeBody(&chunkReader{data: b.Bytes(), cuts: cuts}, []string{"gzip"})
		}
		defer release()
		out, err := io.ReadAll(scrub.NewReader(src, ts.scrub, nil))
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		// The echoed form itself must be gone; the surrounding bytes may
		// by chance spell another form, which the reference check below
		// treats alike.
		want, _ := ts.scrub.ReplaceString(string(body))
		if string(out) != want {
			t.Fatalf("streamed output differs from the one-shot scrub")
		}
		if strings.Contains(strings.ToLower(string(out)), strings.ToLower(tok)) {
			t.Fatalf("the token came out (form %d)", int(form)%len(forms))
		}
	})
}
