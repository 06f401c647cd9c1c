package gitpush

import (
	"errors"
	"fmt"
	"strings"
)

// ContentType is the media type of receive-pack's answer over smart HTTP
// (Documentation/gitprotocol-http.adoc).
const ContentType = "application/x-git-receive-pack-result"

// ErrNoReport is returned by Refusal for a push that asked for no
// report-status: git would take any answer it can read as success.
var ErrNoReport = errors.New("the push asked for no report-status")

// Side-band-64k: a pkt-line of at most maxPkt bytes carries a band byte
// and up to maxBand bytes of data (send_sideband in sideband.c).
const (
	maxBand      = maxPkt - 4 - 1
	bandData     = 1
	bandProgress = 2
)

// Refusal returns the body of receive-pack's answer to r refusing all its
// commands: report-status ("unpack ok", then "ng <ref> <reason>" for each
// command, reason(c) saying why), which git shows as "[remote rejected]"
// with the reason, failing the push. When r asked for side-band-64k the
// report goes on band 1 and each of messages on band 2 before it, which
// git prints as "remote: <message>"; without it the messages are not sent.
// Messages and reasons are made single lines of printable ASCII. It returns
// ErrNoReport when r asked for neither report-status nor report-status-v2.
func Refusal(r *Request, messages []string, reason func(Command) string) ([]byte, error) {
	if !r.Has("report-status") && !r.Has("report-status-v2") {
		return nil, ErrNoReport
	}
	var report []byte
	report = appendPkt(report, "unpack ok\n")
	for _, c := range r.Commands {
		report = appendPkt(report, "ng "+c.Ref+" "+printable(reason(c))+"\n")
	}
	report = append(report, "0000"...)
	if !r.Has("side-band-64k") {
		return report, nil
	}
	var out []byte
	var msg strings.Builder
	for _, m := range messages {
		msg.WriteString(printable(m))
		msg.WriteByte('\n')
	}
	out = appendBand(out, bandProgress, []byte(msg.String()))
	out = appendBand(out, bandData, report)
	return append(out, "0000"...), nil
}

// appendPkt appends s as one pkt-line; s is shorter than maxPkt-4 (a ref
// is at most MaxRef bytes).
func appendPkt(b []byte, s string) []byte {
	b = fmt.Appendf(b, "%04x", len(s)+4)
	return append(b, s...)
}

// appendBand appends data on band as side-band-64k pkt-lines.
func appendBand(b []byte, band byte, data []byte) []byte {
	for len(data) > 0 {
		n := min(len(data), maxBand)
		b = fmt.Appendf(b, "%04x", n+5)
		b = append(b, band)
		b = append(b, data[:n]...)
		data = data[n:]
	}
	return b
}

// printable replaces what is not printable ASCII with '?' and bounds s,
// so a message stays one line of one pkt-line.
func printable(s string) string {
	const maxText = 1024
	if len(s) > maxText {
		s = s[:maxText]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' || r > '~' {
			return '?'
		}
		return r
	}, s)
}
