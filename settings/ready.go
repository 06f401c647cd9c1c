package settings

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Ready is the one line `cork proxy` writes on its ReadyFD (CORK_READY_FD)
// once it listens and has applied its first token map: a signal that is
// not a log line, for a launcher that cannot reach the proxy to ask
// /readyz (the docker backend reads it on the sidecar's stdout). It holds
// addresses only, never a token or credential.
type Ready struct {
	Ready  bool   `json:"ready"`
	Listen string `json:"listen"`          // the proxy's listener: host:port, or unix:PATH
	Admin  string `json:"admin,omitempty"` // the admin listener; empty: none
	CA     string `json:"ca,omitempty"`
}

// WriteReady writes r to w as one JSON line.
func WriteReady(w io.Writer, r Ready) error {
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode readiness: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write readiness: %w", err)
	}
	return nil
}

// ErrNotReady is returned by ReadReady when the stream ends without a
// readiness line.
var ErrNotReady = errors.New("no readiness line")

// ReadReady reads lines from r until one is a Ready with Ready true, and
// returns it; other lines are skipped. It returns ErrNotReady (or the
// read error) if r ends first.
func ReadReady(r io.Reader) (Ready, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var rd Ready
		if json.Unmarshal(sc.Bytes(), &rd) == nil && rd.Ready {
			return rd, nil
		}
	}
	if err := sc.Err(); err != nil {
		return Ready{}, fmt.Errorf("read readiness: %w", err)
	}
	return Ready{}, ErrNotReady
}
