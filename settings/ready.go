package settings

import (
	"bufio"
	"bytes"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
)

// Ready is the one line `cork proxy` writes on its ReadyFD (CORK_READY_FD)
// once it listens and has applied its first token map: a signal that is
// not a log line, for a launcher that cannot reach the proxy to ask
// /readyz (the docker backend reads it on the sidecar's stdout). It holds
// addresses and the CA's public certificate, never a key, token or
// credential: a launcher that cannot copy a file out of the proxy's
// container (the kubernetes backend: a scratch image, no shell) takes the
// CA its sandbox must trust from this line, and the CA key stays in the
// proxy. The zero Ready is "not ready".
type Ready struct {
	Ready  bool   `json:"ready"`
	Listen string `json:"listen"`          // the proxy's listener: host:port, or unix:PATH
	Admin  string `json:"admin,omitempty"` // the admin listener; empty: none
	// CA is the PEM certificate of the CA the proxy signs intercepted
	// hosts' certificates with (`cork proxy` always fills it); empty: not
	// given. WriteReady refuses anything but CERTIFICATE blocks.
	CA string `json:"ca,omitempty"`
}

// maxReadyLine bounds one line read by ReadReady. The CA certificate
// names every intercepted host in its name constraints, so the line grows
// with the policy: bufio's default (64 KiB) is too tight for a large one.
const maxReadyLine = 1 << 20

// WriteReady writes r to w as one JSON line. It refuses an r.CA that is
// not only PEM CERTIFICATE blocks, so that no key can leave this way.
func WriteReady(w io.Writer, r Ready) error {
	if err := checkCertificatesOnly(r.CA); err != nil {
		return fmt.Errorf("readiness ca: %w", err)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode readiness: %w", err)
	}
	if _, err := w.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("write readiness: %w", err)
	}
	return nil
}

// checkCertificatesOnly returns nil if s is empty or nothing but PEM
// CERTIFICATE blocks (and whitespace).
func checkCertificatesOnly(s string) error {
	rest := bytes.TrimSpace([]byte(s))
	for len(rest) > 0 {
		if !bytes.HasPrefix(rest, []byte("-----BEGIN ")) {
			return errors.New("not PEM") // pem.Decode would skip it
		}
		var b *pem.Block
		b, rest = pem.Decode(rest)
		rest = bytes.TrimSpace(rest)
		switch {
		case b == nil:
			return errors.New("not PEM")
		case b.Type != "CERTIFICATE":
			return fmt.Errorf("a %q block: want CERTIFICATE only", b.Type)
		}
	}
	return nil
}

// ErrNotReady is returned by ReadReady when the stream ends without a
// readiness line.
var ErrNotReady = errors.New("no readiness line")

// ReadReady reads lines from r until one is a Ready with Ready true, and
// returns it; other lines are skipped. It returns ErrNotReady (or the
// read error) if r ends first. Lines are read up to 1 MiB.
func ReadReady(r io.Reader) (Ready, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxReadyLine)
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
