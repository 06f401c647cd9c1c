package gitpush

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
)

const (
	zero1 = "0000000000000000000000000000000000000000"
	oidA  = "1111111111111111111111111111111111111111"
	oidB  = "2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b2b"
	oidC  = "CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
	zero2 = "0000000000000000000000000000000000000000000000000000000000000000"
	oid2A = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	oid2B = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

	gitCaps = "report-status-v2 side-band-64k quiet object-format=sha1 agent=git/2.39.5"
)

// pkt is s as a pkt-line.
func pkt(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }

// cert is a push certificate's packets (after the "push-cert" line) with
// commands, its body lines each ending in LF, and a signature.
func cert(commands string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter("certificate version 0.1\npusher cork 1 +0000\nnonce 1-ab\n\n"+commands+
		"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n", "\n") {
		if l != "" {
			b.WriteString(pkt(l))
		}
	}
	return b.String() + pkt("push-cert-end\n")
}

const pack = "PACK\x00\x00\x00\x02\x00\x00\x00\x00 the pack follows, never read"

func TestReadRequest(t *testing.T) {
	for _, tc := range []struct {
		name string
		head string
		cmds []Command
		caps []string
	}{
		{"empty body", "", nil, nil},
		{"probe", "0000", nil, nil},
		{"create", pkt(zero1+" "+oidA+" refs/heads/agent/x\x00"+gitCaps) + "0000",
			[]Command{{zero1, oidA, "refs/heads/agent/x"}}, strings.Fields(gitCaps)},
		{"trailing LF removed", pkt(oidA+" "+oidB+" refs/heads/main\x00report-status\n") + pkt(oidB+" "+oidA+" refs/tags/v1\n") + "0000",
			[]Command{{oidA, oidB, "refs/heads/main"}, {oidB, oidA, "refs/tags/v1"}}, []string{"report-status"}},
		{"delete and upper-case hex", pkt(oidC+" "+zero1+" refs/heads/old\x00report-status delete-refs") + "0000",
			[]Command{{oidC, zero1, "refs/heads/old"}}, []string{"report-status", "delete-refs"}},
		{"upper-case length", "006A" + oidA + " " + oidB + " refs/heads/zzzzzzzzz" + "0000",
			[]Command{{oidA, oidB, "refs/heads/zzzzzzzzz"}}, nil},
		{"shallow first", pkt("shallow "+oidB+"\n") + pkt("shallow "+oidA) + pkt(oidA+" "+oidB+" refs/heads/a\x00side-band-64k") + "0000",
			[]Command{{oidA, oidB, "refs/heads/a"}}, []string{"side-band-64k"}},
		{"capabilities on a later line", pkt(oidA+" "+oidB+" refs/heads/a") + pkt(oidB+" "+oidA+" refs/heads/b\x00report-status") + "0000",
			[]Command{{oidA, oidB, "refs/heads/a"}, {oidB, oidA, "refs/heads/b"}}, []string{"report-status"}},
		{"sha256", pkt(zero2+" "+oid2A+" refs/heads/agent/y\x00report-status object-format=sha256") + pkt(oid2A+" "+zero2+" refs/heads/gone") + "0000",
			[]Command{{zero2, oid2A, "refs/heads/agent/y"}, {oid2A, zero2, "refs/heads/gone"}}, []string{"report-status", "object-format=sha256"}},
		{"signed", pkt("push-cert\x00 report-status side-band-64k\n") + cert(zero1+" "+oidA+" refs/heads/agent/s\n"+oidA+" "+zero1+" refs/heads/old\n") + "0000",
			[]Command{{zero1, oidA, "refs/heads/agent/s"}, {oidA, zero1, "refs/heads/old"}}, []string{"report-status", "side-band-64k"}},
		{"signed, then unsigned", pkt("push-cert\x00report-status") + cert(zero1+" "+oidA+" refs/heads/s\n") + pkt(oidB+" "+oidA+" refs/heads/u") + "0000",
			[]Command{{oidB, oidA, "refs/heads/u"}, {zero1, oidA, "refs/heads/s"}}, []string{"report-status"}},
		{"signed, ended by a flush", pkt("push-cert\x00report-status") + pkt("certificate version 0.1\n") + pkt("\n") + pkt(zero1+" "+oidA+" refs/heads/f\n") + "0000",
			[]Command{{zero1, oidA, "refs/heads/f"}}, []string{"report-status"}},
		{"signed, packets cut at NUL", pkt("push-cert\x00report-status") + pkt("certificate version 0.1\n\x00junk") + pkt("\n") + pkt(zero1+" "+oidA+" refs/heads/a\x00x") + pkt("b\n") + pkt("push-cert-end\n\x00x") + "0000",
			[]Command{{zero1, oidA, "refs/heads/ab"}}, []string{"report-status"}},
		{"signed, nothing after the signature is read", pkt("push-cert\x00report-status") + cert(zero1+" "+oidA+" refs/heads/a\n-----BEGIN SSH SIGNATURE-----\n"+zero1+" "+oidA+" refs/heads/main\n") + "0000",
			[]Command{{zero1, oidA, "refs/heads/a"}}, []string{"report-status"}},
		{"sha256 shallow", pkt("shallow "+oid2B) + pkt(oid2B+" "+oid2A+" refs/heads/s") + "0000",
			[]Command{{oid2B, oid2A, "refs/heads/s"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := tc.head
			if tc.head != "" {
				body += pack
			}
			br := strings.NewReader(body)
			req, err := ReadRequest(br)
			if err != nil {
				t.Fatalf("ReadRequest(%q) = %v", tc.head, err)
			}
			if !reflect.DeepEqual(req.Commands, tc.cmds) {
				t.Errorf("ReadRequest(%q).Commands = %q, want %q", tc.head, req.Commands, tc.cmds)
			}
			if !reflect.DeepEqual(req.Capabilities, tc.caps) {
				t.Errorf("ReadRequest(%q).Capabilities = %q, want %q", tc.head, req.Capabilities, tc.caps)
			}
			if string(req.Head) != tc.head {
				t.Errorf("ReadRequest(%q).Head = %q, want the head exactly", tc.head, req.Head)
			}
			rest, _ := io.ReadAll(br)
			if tc.head != "" && string(rest) != pack {
				t.Errorf("after ReadRequest(%q) the body goes on with %q, want the pack untouched", tc.head, rest)
			}
		})
	}
}

func TestReadRequestRefuses(t *testing.T) {
	create := pkt(zero1 + " " + oidA + " refs/heads/a\x00report-status")
	for _, tc := range []struct{ name, body string }{
		{"bad length", "zz00"},
		{"delim-pkt", create + "0001"},
		{"response-end-pkt", create + "0002"},
		{"length 3", "0003"},
		{"empty pkt-line", "0004" + "0000"},
		{"too long", fmt.Sprintf("%04x", maxPkt+1) + strings.Repeat("x", maxPkt-3)},
		{"truncated length", "00"},
		{"truncated payload", create[:20]},
		{"no flush", create},
		{"push-cert without a blank line", pkt("push-cert\x00report-status side-band-64k\n") + pkt("certificate version 0.1\n") + pkt("push-cert-end\n") + "0000"},
		{"push-cert with a bad ref, then main", pkt("push-cert\x00report-status") + cert(zero1+" "+oidA+" refs/heads/a b\n"+zero1+" "+oidA+" refs/heads/main\n") + "0000"},
		{"push-cert with an empty ref, then main", pkt("push-cert\x00report-status") + cert(zero1+" "+oidA+" \n"+zero1+" "+oidA+" refs/heads/main\n") + "0000"},
		{"push-cert with CR", pkt("push-cert\x00report-status") + cert(zero1+" "+oidA+" refs/heads/main\r\n") + "0000"},
		{"push-cert, special packet", pkt("push-cert\x00report-status") + pkt("certificate version 0.1\n") + "0001" + "0000"},
		{"ERR", pkt("ERR nope") + "0000"},
		{"short ids", pkt("00 11 refs/heads/a") + "0000"},
		{"no ref", pkt(zero1+" "+oidA+" ") + "0000"},
		{"no space before ref", pkt(zero1+" "+oidA+"refs/heads/a") + "0000"},
		{"non-hex id", pkt(zero1+" "+strings.Repeat("g", 40)+" refs/heads/a") + "0000"},
		{"mixed id lengths", create + pkt(zero2+" "+oid2A+" refs/heads/b") + "0000"},
		{"mixed id lengths in one line", pkt(zero1+" "+oid2A+" refs/heads/b") + "0000"},
		{"shallow of another length", pkt("shallow "+oid2A) + create + "0000"},
		{"shallow with more", pkt("shallow "+oidA+" x") + create + "0000"},
		{"shallow without id", pkt("shallow ") + create + "0000"},
		{"space in ref", pkt(zero1+" "+oidA+" refs/heads/a b") + "0000"},
		{"LF inside ref", pkt(zero1+" "+oidA+" refs/heads/a\n\x00report-status") + "0000"},
		{"control in ref", pkt(zero1+" "+oidA+" refs/heads/\x1b[31m") + "0000"},
		{"long ref", pkt(zero1+" "+oidA+" refs/heads/"+strings.Repeat("r", MaxRef)) + "0000"},
		{"too many commands", strings.Repeat(pkt(zero1+" "+oidA+" refs/heads/a"), MaxCommands+1) + "0000"},
		{"head too long", strings.Repeat(pkt(zero1+" "+oidA+" refs/heads/"+strings.Repeat("r", 4000)), 300) + "0000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := ReadRequest(strings.NewReader(tc.body))
			if !errors.Is(err, ErrUnparseable) || req != nil {
				t.Errorf("ReadRequest(%.80q) = %v, %v; want nil, ErrUnparseable", tc.body, req, err)
			}
		})
	}
}

// errReader fails after its data.
type errReader struct {
	data string
	err  error
}

func (r *errReader) Read(p []byte) (int, error) {
	if r.data == "" {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

func TestReadRequestReadError(t *testing.T) {
	boom := errors.New("connection reset")
	_, err := ReadRequest(&errReader{data: pkt(zero1 + " " + oidA + " refs/heads/a"), err: boom})
	if !errors.Is(err, boom) || errors.Is(err, ErrUnparseable) {
		t.Errorf("ReadRequest(reset body) = %v, want the read error, not ErrUnparseable", err)
	}
}

// oneByteReader hands out one byte per Read and fails on any read past
// its data: ReadRequest must never ask for the pack.
type oneByteReader struct {
	t    *testing.T
	data []byte
}

func (r *oneByteReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		r.t.Errorf("ReadRequest read past the flush-pkt")
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.data[0]
	r.data = r.data[1:]
	return 1, nil
}

func TestReadRequestReadsNoFurther(t *testing.T) {
	head := pkt("shallow "+oidA) + pkt(zero1+" "+oidA+" refs/heads/a\x00report-status") + pkt(oidA+" "+zero1+" refs/heads/b") + "0000"
	req, err := ReadRequest(&oneByteReader{t: t, data: []byte(head)})
	if err != nil {
		t.Fatalf("ReadRequest = %v", err)
	}
	if !bytes.Equal(req.Head, []byte(head)) || len(req.Commands) != 2 || !req.Commands[1].Delete() || req.Commands[0].Delete() {
		t.Errorf("ReadRequest = %+v, want the two commands, the second a delete", req)
	}
}

func TestCommandDelete(t *testing.T) {
	for _, tc := range []struct {
		c    Command
		want bool
	}{
		{Command{Old: oidA, New: zero1}, true},
		{Command{Old: oid2A, New: zero2}, true},
		{Command{Old: zero1, New: oidA}, false},
		{Command{}, false},
	} {
		if got := tc.c.Delete(); got != tc.want {
			t.Errorf("%+v.Delete() = %v, want %v", tc.c, got, tc.want)
		}
	}
}

func TestHas(t *testing.T) {
	r := &Request{Capabilities: []string{"report-status-v2", "object-format=sha256"}}
	for name, want := range map[string]bool{"report-status-v2": true, "report-status": false, "object-format": true, "sha256": false} {
		if got := r.Has(name); got != want {
			t.Errorf("Has(%q) = %v, want %v", name, got, want)
		}
	}
}
