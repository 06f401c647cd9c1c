package gitpush

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzReadRequest: ReadRequest never panics; what it accepts is a prefix
// of the body ending in a flush-pkt (or nothing), whose commands have ids
// of one length and a ref without space or control character; what it
// refuses is ErrUnparseable. A model of receive-pack (receivepack_test.go)
// acts on no command it did not return. Its answer to an accepted request
// is well-formed side-band.
func FuzzReadRequest(f *testing.F) {
	for _, seed := range []string{
		"",
		"0000",
		pkt(zero1+" "+oidA+" refs/heads/agent/x\x00"+gitCaps) + "0000" + pack,
		pkt("shallow "+oidA) + pkt(oidA+" "+zero1+" refs/heads/main\x00report-status\n") + pkt(oidB+" "+oidA+" refs/tags/v1") + "0000",
		pkt(zero2+" "+oid2A+" refs/heads/y\x00report-status object-format=sha256") + "0000",
		pkt("push-cert\x00report-status\n") + pkt("certificate version 0.1\n") + "0000",
		pkt("push-cert\x00report-status side-band-64k") + cert(zero1+" "+oidA+" refs/heads/s\n") + pkt(oidA+" "+oidB+" refs/heads/u") + "0000",
		pkt("push-cert\x00report-status") + pkt("certificate version 0.1\n") + pkt("\n") + pkt(zero1+" "+oidA+" refs/heads/s\n") +
			pkt("-----BEGIN SSH SIGNATURE-----\n") + pkt(zero1+" "+oidA+" refs/heads/main\n") + "0000",
		"0001", "0004", "ffff", "00a0" + oidA,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := ReadRequest(bytes.NewReader(body))
		if err != nil {
			if req != nil {
				t.Fatalf("ReadRequest = %+v with error %v", req, err)
			}
			return
		}
		if !bytes.HasPrefix(body, req.Head) {
			t.Fatalf("Head %q is not a prefix of the body", req.Head)
		}
		if len(req.Head) > 0 && !bytes.HasSuffix(req.Head, []byte("0000")) {
			t.Fatalf("Head %q does not end with a flush-pkt", req.Head)
		}
		if len(req.Head) > MaxHead || len(req.Commands) > MaxCommands {
			t.Fatalf("Head of %d bytes, %d commands: over the bounds", len(req.Head), len(req.Commands))
		}
		n := 0
		for _, c := range req.Commands {
			if n == 0 {
				n = len(c.Old)
			}
			if len(c.Old) != n || len(c.New) != n || (n != hexSHA1 && n != hexSHA256) || !validRef(c.Ref) {
				t.Fatalf("command %+v: not a valid command", c)
			}
			if strings.ContainsAny(c.Ref, " \x00\n") {
				t.Fatalf("ref %q holds a separator", c.Ref)
			}
		}
		// The model of receive-pack acts on no command ReadRequest did
		// not return, whichever the server's object format.
		for _, hexsz := range []int{hexSHA1, hexSHA256} {
			server, died := receivePack(body, hexsz)
			if died {
				continue
			}
			ours := map[Command]int{}
			for _, c := range req.Commands {
				ours[c]++
			}
			for _, c := range server {
				if ours[c] == 0 {
					t.Fatalf("receive-pack (%d-digit ids) acts on %+v, which ReadRequest did not return (it returned %+v)", hexsz, c, req.Commands)
				}
				ours[c]--
			}
		}
		out, err := Refusal(req, []string{"cork: refused\n\x01"}, func(Command) string { return "no\nway" })
		if errors.Is(err, ErrNoReport) {
			return
		}
		if err != nil {
			t.Fatalf("Refusal = %v", err)
		}
		checkBands(t, out)
	})
}

// checkBands checks that out is side-band or plain pkt-lines ending in a
// flush, each at most maxPkt bytes.
func checkBands(t *testing.T, out []byte) {
	t.Helper()
	for len(out) > 0 {
		n, ok := pktLen(out)
		if !ok || n > maxPkt || (n != 0 && n < 5) || n > len(out) {
			t.Fatalf("bad pkt-line at %q", out[:min(len(out), 16)])
		}
		if n == 0 {
			if len(out) != 4 {
				// a plain report's own flush then nothing, or band 1's
				// inner flush inside a packet: only the last is bare
				t.Fatalf("flush-pkt before the end: %q", out[:min(len(out), 16)])
			}
			return
		}
		out = out[n:]
	}
	t.Fatalf("no final flush-pkt")
}
