package auditlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// MaxLineLen bounds one log line; a longer one is skipped as garbage.
const MaxLineLen = 1 << 20

// msgEgress is the msg of a decision line (proxy/audit.go).
const msgEgress = "egress"

// Line is one egress audit line, the fields cork audit reads.
type Line struct {
	Msg       string `json:"msg"`
	Decision  string `json:"decision"` // inject, tunnel, forward, deny or block
	Host      string `json:"host"`
	Port      int    `json:"port"`
	Method    string `json:"method"` // "CONNECT" for a tunnel's decision; empty on a tunnel's closing line
	Path      string `json:"path"`
	Slot      string `json:"slot"` // the credential injected, or the slot a tripwire named
	Status    int    `json:"status"`
	BytesUp   int64  `json:"bytes_up"`
	BytesDown int64  `json:"bytes_down"`
	Reason    string `json:"reason"`
	Rule      string `json:"rule"`    // the policy entry that decided: "routes[2]"
	Session   string `json:"session"` // the session id, when the proxy had one
}

// Read reads a log from r and sums up its egress lines. It fails only
// when r does (a read error); malformed lines are counted in
// Summary.Garbage.
func Read(r io.Reader) (*Summary, error) {
	s := NewSummary()
	br := bufio.NewReaderSize(r, 64<<10)
	var buf []byte
	tooLong := false
	for {
		chunk, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			tooLong = tooLong || len(buf)+len(chunk) > MaxLineLen
			if !tooLong {
				buf = append(buf, chunk...)
			}
			continue
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read audit log: %w", err)
		}
		switch {
		case tooLong || len(buf)+len(chunk) > MaxLineLen:
			s.Garbage++
		case len(buf) > 0:
			s.addRaw(append(buf, chunk...))
		default:
			s.addRaw(chunk)
		}
		buf, tooLong = buf[:0], false
		if err != nil { // io.EOF
			return s, nil
		}
	}
}

// addRaw adds one raw line: an egress line is counted, another JSON
// object ignored, anything else is garbage. Blank lines are nothing.
func (s *Summary) addRaw(b []byte) {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return
	}
	if b[0] != '{' {
		s.Garbage++
		return
	}
	var l Line
	if err := json.Unmarshal(b, &l); err != nil {
		s.Garbage++
		return
	}
	if l.Msg != msgEgress || l.Decision == "" {
		s.Other++
		return
	}
	s.Add(l)
}
