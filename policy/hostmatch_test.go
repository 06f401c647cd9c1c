package policy

import (
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNormalizeHost(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "plain", in: "chatgpt.com", want: "chatgpt.com"},
		{name: "upper", in: "ChatGPT.COM", want: "chatgpt.com"},
		{name: "trailing dot", in: "chatgpt.com.", want: "chatgpt.com"},
		{name: "two trailing dots", in: "chatgpt.com..", wantErr: true},
		{name: "underscore", in: "_acme.example.com", want: "_acme.example.com"},
		{name: "single label", in: "localhost", want: "localhost"},
		{name: "idn", in: "Bücher.de", want: "xn--bcher-kva.de"},
		{name: "idn trailing dot", in: "bücher.de.", want: "xn--bcher-kva.de"},
		{name: "idn fullwidth dot", in: "bücher。de", want: "xn--bcher-kva.de"},
		{name: "punycode", in: "XN--BCHER-KVA.de", want: "xn--bcher-kva.de"},
		{name: "bad punycode", in: "xn--zz-.de", wantErr: true},
		{name: "ipv4", in: "10.0.0.1", want: "10.0.0.1"},
		{name: "ipv4 trailing dot", in: "10.0.0.1.", want: "10.0.0.1"},
		{name: "ipv6 bare", in: "2001:DB8::1", want: "2001:db8::1"},
		{name: "ipv6 brackets", in: "[2001:db8:0::1]", want: "2001:db8::1"},
		{name: "ipv4-mapped", in: "[::ffff:127.0.0.1]", want: "127.0.0.1"},
		{name: "ipv6 zone", in: "fe80::1%eth0", wantErr: true},
		{name: "short ipv4", in: "127.1", wantErr: true},
		{name: "hex ipv4", in: "0x7f.0.0.1", wantErr: true},
		{name: "octal-looking ipv4", in: "010.0.0.1", wantErr: true},
		{name: "numeric label", in: "example.123", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "dot", in: ".", wantErr: true},
		{name: "empty label", in: "a..b", wantErr: true},
		{name: "leading dot", in: ".example.com", wantErr: true},
		{name: "space", in: "exa mple.com", wantErr: true},
		{name: "star", in: "*.example.com", wantErr: true},
		{name: "port", in: "example.com:443", wantErr: true},
		{name: "slash", in: "example.com/x", wantErr: true},
		{name: "percent", in: "exa%41mple.com", wantErr: true},
		{name: "leading hyphen", in: "-a.example.com", wantErr: true},
		{name: "long label", in: strings.Repeat("a", 64) + ".com", wantErr: true},
		{name: "long host", in: strings.Repeat("a.", 127) + "com", wantErr: true},
		{name: "unclosed bracket", in: "[::1", wantErr: true},
		{name: "bracketed name", in: "[example.com]", wantErr: true},
		{name: "nul", in: "a\x00.com", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeHost(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NormalizeHost(%q) = %q, want error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeHost(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestNormalizeHostNoAlloc(t *testing.T) {
	for _, h := range []string{"chatgpt.com", "api.github.com", "10.0.0.1", "2001:db8::1"} {
		if n := testing.AllocsPerRun(100, func() { _, _ = NormalizeHost(h) }); n != 0 {
			t.Errorf("NormalizeHost(%q) allocates %v times, want 0", h, n)
		}
	}
}

func TestParseHostPattern(t *testing.T) {
	tests := []struct {
		in       string
		want     string // canonical String(); "" = error
		wildcard bool
		port     int
	}{
		{in: "chatgpt.com", want: "chatgpt.com"},
		{in: "ChatGPT.com.", want: "chatgpt.com"},
		{in: "*.example.com", want: "*.example.com", wildcard: true},
		{in: "*.Example.COM.", want: "*.example.com", wildcard: true},
		{in: "*.com", want: "*.com", wildcard: true},
		{in: "api.test:8443", want: "api.test:8443", port: 8443},
		{in: "*.test:8443", want: "*.test:8443", wildcard: true, port: 8443},
		{in: "[::1]:8443", want: "[::1]:8443", port: 8443},
		{in: "[2001:db8::1]", want: "2001:db8::1"},
		{in: "2001:DB8::1", want: "2001:db8::1"},
		{in: "10.0.0.1:443", want: "10.0.0.1:443", port: 443},
		{in: "bücher.de", want: "xn--bcher-kva.de"},
		{in: "*"},
		{in: "*.*.example.com"},
		{in: "a.*.example.com"},
		{in: "*foo.com"},
		{in: "foo*.com"},
		{in: "*."},
		{in: "*.10.0.0.1"},
		{in: "https://example.com"},
		{in: "example.com/path"},
		{in: "user@example.com"},
		{in: "example.com?x"},
		{in: " example.com"},
		{in: "example .com"},
		{in: ""},
		{in: "example.com:"},
		{in: "example.com:0"},
		{in: "example.com:65536"},
		{in: "example.com:+443"},
		{in: "example.com:https"},
		{in: "[::1]x"},
		{in: "[example.com]:443"},
		{in: "[10.0.0.1]:443"},
		{in: "a..com"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			p, err := ParseHostPattern(tt.in)
			if tt.want == "" {
				if err == nil {
					t.Fatalf("ParseHostPattern(%q) = %v, want error", tt.in, p)
				}
				if !strings.Contains(err.Error(), "invalid host pattern") {
					t.Errorf("ParseHostPattern(%q) error %q does not say invalid host pattern", tt.in, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseHostPattern(%q): %v", tt.in, err)
			}
			if p.String() != tt.want || p.wildcard != tt.wildcard || p.port != tt.port {
				t.Errorf("ParseHostPattern(%q) = %v (wildcard %v, port %d), want %v (wildcard %v, port %d)",
					tt.in, p, p.wildcard, p.port, tt.want, tt.wildcard, tt.port)
			}
			if again, err := ParseHostPattern(p.String()); err != nil || again != p {
				t.Errorf("ParseHostPattern(%q) does not round-trip: %v, %v", p.String(), again, err)
			}
		})
	}
}

func TestHostPatternMatch(t *testing.T) {
	tests := []struct {
		pattern, host string
		want          bool
	}{
		{"*.example.com", "a.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"*.example.com", "badexample.com", false},
		{"*.example.com", "a.badexample.com", false},
		{"*.example.com", "example.com.evil.net", false},
		{"example.com", "example.com", true},
		{"example.com", "a.example.com", false},
	}
	for _, tt := range tests {
		// Through the policy's lookup, the path every request takes.
		pol, err := Parse([]byte("allow: [" + strconv.Quote(tt.pattern) + "]"))
		if err != nil {
			t.Fatal(err)
		}
		if got := pol.Lookup(tt.host, 443).Allowed; got != tt.want {
			t.Errorf("allow %s: Lookup(%q).Allowed = %v, want %v", tt.pattern, tt.host, got, tt.want)
		}
	}
}

func FuzzNormalizeHost(f *testing.F) {
	for _, s := range []string{
		"chatgpt.com", "ChatGPT.COM.", "bücher.de", "xn--bcher-kva.de", "[2001:db8::1]",
		"::ffff:10.0.0.1", "127.1", "0x7f.1", "a..b", "_x.example.com", "*.example.com",
		"example.com:443", "fe80::1%eth0", "ＥＸＡＭＰＬＥ．ｃｏｍ", "xn--", "a-.com", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := NormalizeHost(in)
		if err != nil {
			return
		}
		if again, err := NormalizeHost(out); err != nil || again != out {
			t.Fatalf("NormalizeHost(%q) = %q, but NormalizeHost(%q) = %q, %v", in, out, out, again, err)
		}
		if out == "" || strings.HasSuffix(out, ".") || strings.ContainsAny(out, "[] */%@") {
			t.Fatalf("NormalizeHost(%q) = %q: not a bare normalised host", in, out)
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c >= utf8.RuneSelf || 'A' <= c && c <= 'Z' {
				t.Fatalf("NormalizeHost(%q) = %q: not lower-case ASCII", in, out)
			}
		}
		// Case never matters for ASCII input.
		if isASCII(in) {
			if up, err := NormalizeHost(strings.ToUpper(in)); err != nil || up != out {
				t.Fatalf("NormalizeHost(%q) = %q, %v; NormalizeHost(%q) = %q", strings.ToUpper(in), up, err, in, out)
			}
		}
		// Every normalised host is usable as an exact pattern.
		p, err := ParseHostPattern(out)
		if strings.Contains(out, ":") {
			p, err = ParseHostPattern("[" + out + "]")
		}
		if err != nil || p.host != out || p.wildcard || p.port != 0 {
			t.Fatalf("ParseHostPattern(%q) = %+v, %v", out, p, err)
		}
	})
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}
