package auditlog

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/cork-sh/cork/policy"
)

// Missing returns the allow: entries that the run's not_allowed denials
// were missing: one per host:port, written as the bare host for ports
// 443 and 80 (which a bare host covers), sorted and without duplicates.
// Entries are in the policy's canonical form. A host that is not a valid
// policy host, or is a wildcard (neither comes from cork's own proxy), is
// left out and returned in skipped.
func (s *Summary) Missing() (allow []policy.Allow, skipped []string) {
	seen := map[string]bool{}
	for k := range s.denials {
		if k.reason != ReasonNotAllowed {
			continue
		}
		entry := hostEntry(k.host, k.port)
		pat, err := policy.ParseHostPattern(entry)
		if err != nil || pat.Wildcard() {
			if !seen[entry] {
				seen[entry] = true
				skipped = append(skipped, entry)
			}
			continue
		}
		if entry = pat.String(); !seen[entry] {
			seen[entry] = true
			allow = append(allow, policy.Allow{Host: entry})
		}
	}
	slices.SortFunc(allow, func(a, b policy.Allow) int { return strings.Compare(a.Host, b.Host) })
	slices.Sort(skipped)
	return allow, skipped
}

// hostEntry is host:port as a policy host entry: the bare host for the
// default ports, brackets around an IPv6 literal with a port.
func hostEntry(host string, port int) string {
	if port == 443 || port == 80 || port == 0 {
		return host
	}
	if strings.IndexByte(host, ':') >= 0 {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// WriteMissing writes the policy fragment of Missing: a YAML document with
// the allow: entries (valid for `cork run --policy`; "allow: []" when
// none), and, as comments, the method_not_allowed and path_not_allowed
// refusals with their method and path, which need a human decision (a
// method or path rule is there on purpose).
func (s *Summary) WriteMissing(w io.Writer) error {
	allow, skipped := s.Missing()
	var b bytes.Buffer
	b.WriteString("# allow: entries for the hosts this log's requests were refused as not_allowed\n")
	b.WriteString("# (from cork audit --missing). Review them before adding them to a policy.\n")
	if len(allow) == 0 {
		b.WriteString("allow: []\n")
	} else {
		enc := yaml.NewEncoder(&b)
		enc.SetIndent(2)
		if err := enc.Encode(struct {
			Allow []policy.Allow `yaml:"allow"`
		}{allow}); err != nil {
			return fmt.Errorf("render allow entries: %w", err)
		}
		if err := enc.Close(); err != nil {
			return fmt.Errorf("render allow entries: %w", err)
		}
	}
	for _, h := range skipped {
		fmt.Fprintf(&b, "# not a policy host, left out: %q\n", h)
	}
	if qs := s.Requests(); len(qs) > 0 {
		b.WriteString("#\n# Refused by the method or path rules of a routed or scoped host; widen them\n")
		b.WriteString("# by hand if the request is wanted (a credential would be spent on it):\n")
		for _, q := range qs {
			slot := ""
			if q.Slot != "" {
				slot = " slot " + q.Slot
			}
			fmt.Fprintf(&b, "#   %s %s %s (%s%s, %s)\n", q.Method, hostEntry(q.Host, q.Port), oneLine(q.Path), q.Reason, slot, plural(q.Count, "time"))
		}
	}
	if _, err := w.Write(b.Bytes()); err != nil {
		return fmt.Errorf("write allow entries: %w", err)
	}
	return nil
}

// oneLine keeps a logged path on one comment line.
func oneLine(p string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, p)
}
