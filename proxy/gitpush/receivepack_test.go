package gitpush

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

// receivePack is a model of how git's receive-pack reads a push's commands
// (builtin/receive-pack.c read_head_info, queue_command,
// queue_commands_from_cert; pkt-line.c packet_read_with_status;
// gpg-interface.c parse_signed_buffer), written from the C for the
// differential fuzz test: a server whose ids have hexsz hex digits reads
// body and acts on cmds, or dies (refuses the whole push).
func receivePack(body []byte, hexsz int) (cmds []Command, died bool) {
	format := map[int]string{hexSHA1: "sha1", hexSHA256: "sha256"}[hexsz]
	// read returns a packet's payload (chomped if asked), or flush for
	// 0000, or special for 0001 and 0002; or it dies.
	read := func(chomp bool) (line []byte, flush, special, die bool) {
		if len(body) < 4 {
			return nil, false, false, true // EOF: "the remote end hung up"
		}
		n, ok := pktLen(body)
		if !ok {
			return nil, false, false, true
		}
		switch {
		case n == 0:
			body = body[4:]
			return nil, true, false, false
		case n <= 2:
			body = body[4:]
			return nil, false, true, false
		case n < 4, n-4 >= maxPkt, len(body) < n:
			return nil, false, false, true
		}
		line = append([]byte(nil), body[4:n]...)
		body = body[n:]
		if chomp && len(line) > 0 && line[len(line)-1] == '\n' {
			line = line[:len(line)-1]
		}
		if bytes.HasPrefix(line, []byte("ERR ")) {
			return nil, false, false, true
		}
		return line, false, false, false
	}
	cstr := func(b []byte) []byte { // the C string: up to the first NUL
		s, _, _ := bytes.Cut(b, []byte{0})
		return s
	}
	parseOID := func(s []byte) ([]byte, bool) { // parse_oid_hex: hexsz hex digits
		if len(s) < hexsz || !allHex(string(s[:hexsz])) {
			return nil, false
		}
		return s[hexsz:], true
	}
	queue := func(line []byte) bool { // queue_command
		rest, ok := parseOID(line)
		if !ok || len(rest) == 0 || rest[0] != ' ' {
			return false
		}
		rest, ok = parseOID(rest[1:])
		if !ok || len(rest) == 0 || rest[0] != ' ' {
			return false
		}
		cmds = append(cmds, Command{Old: string(line[:hexsz]), New: string(line[hexsz+1 : 2*hexsz+1]), Ref: string(rest[1:])})
		return true
	}
	var cert []byte
	for {
		line, flush, special, die := read(true)
		if die {
			return nil, true
		}
		if flush || special {
			break
		}
		if len(line) > 8 && bytes.HasPrefix(line, []byte("shallow ")) {
			if _, ok := parseOID(cstr(line[8:])); !ok {
				return nil, true
			}
			continue
		}
		s := cstr(line)
		if len(s) < len(line) {
			hash := "sha1"
			for _, f := range strings.Fields(string(cstr(line[len(s)+1:]))) {
				if v, ok := strings.CutPrefix(f, "object-format="); ok {
					hash = v
					break
				}
			}
			if hash != format {
				return nil, true
			}
		}
		if string(s) == "push-cert" {
			flush := false
			for {
				l, f, special, die := read(false)
				if die || special {
					return nil, true
				}
				if f {
					flush = true
					break
				}
				if string(cstr(l)) == "push-cert-end\n" {
					break
				}
				cert = append(cert, cstr(l)...)
			}
			if flush {
				break
			}
			continue
		}
		if !queue(s) {
			return nil, true
		}
	}
	if len(cert) > 0 {
		i := bytes.Index(cert, []byte("\n\n"))
		if i < 0 {
			return nil, true
		}
		boc, eoc := i+2, len(cert)
		for at := 0; at < len(cert); {
			for _, sig := range []string{"-----BEGIN PGP SIGNATURE-----", "-----BEGIN PGP MESSAGE-----",
				"-----BEGIN SIGNED MESSAGE-----", "-----BEGIN SSH SIGNATURE-----"} {
				if bytes.HasPrefix(cert[at:], []byte(sig)) {
					eoc = at
				}
			}
			if j := bytes.IndexByte(cert[at:], '\n'); j >= 0 {
				at += j + 1
			} else {
				at = len(cert)
			}
		}
		for boc < eoc {
			end := eoc
			if j := bytes.IndexByte(cert[boc:eoc], '\n'); j >= 0 {
				end = boc + j
			}
			// queue_command reads past the line only into its LF (not
			// hex, not a space) or the end of the buffer: it fails there
			// as the model fails at the end of the slice.
			if !queue(cert[boc:end]) {
				return nil, true
			}
			boc = end + 1
		}
	}
	return cmds, false
}

// TestReceivePackModel keeps the model honest: on pushes git sends it reads
// what ReadRequest reads, and it dies where receive-pack does.
func TestReceivePackModel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		body  string
		hexsz int
		want  int // commands; -1: dies
	}{
		{"create", pkt(zero1+" "+oidA+" refs/heads/a\x00report-status") + "0000" + pack, hexSHA1, 1},
		{"sha256", pkt(zero2+" "+oid2A+" refs/heads/a\x00object-format=sha256") + pkt(oid2A+" "+zero2+" refs/heads/b") + "0000", hexSHA256, 2},
		{"sha1 push to a sha256 server", pkt(zero1+" "+oidA+" refs/heads/a\x00report-status") + "0000", hexSHA256, -1},
		{"signed", pkt("push-cert\x00report-status") + cert(zero1+" "+oidA+" refs/heads/s\n"+oidA+" "+zero1+" refs/heads/t\n") + "0000", hexSHA1, 2},
		{"signed, a line before the last signature", pkt("push-cert\x00report-status") + cert(zero1+" "+oidA+" refs/heads/s\n-----BEGIN SSH SIGNATURE-----\n") + "0000", hexSHA1, -1},
		{"signed, a command after the signature", pkt("push-cert\x00report-status") + pkt("certificate version 0.1\n") + pkt("\n") +
			pkt(zero1+" "+oidA+" refs/heads/s\n") + pkt("-----BEGIN SSH SIGNATURE-----\n") + pkt(zero1+" "+oidA+" refs/heads/main\n") + "0000", hexSHA1, 1},
		{"ERR", pkt("ERR x") + "0000", hexSHA1, -1},
		{"empty", "", hexSHA1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmds, died := receivePack([]byte(tc.body), tc.hexsz)
			got := len(cmds)
			if died {
				got = -1
			}
			if got != tc.want {
				t.Errorf("receivePack = %+v, died %v; want %d commands", cmds, died, tc.want)
			}
			if req, err := ReadRequest(strings.NewReader(tc.body)); err == nil && !died && !reflect.DeepEqual(req.Commands, cmds) {
				t.Errorf("ReadRequest = %+v, the model %+v", req.Commands, cmds)
			}
		})
	}
}
