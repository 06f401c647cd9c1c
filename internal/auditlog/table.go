package auditlog

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTable writes s as aligned text: the traffic by decision, host, port
// and slot (count, bytes up and down), the denials by reason, and a last
// line counting what was read.
func (s *Summary) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DECISION\tHOST\tPORT\tSLOT\tCOUNT\tUP\tDOWN")
	for _, r := range s.Rows() {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\n", r.Decision, r.Host, r.Port, dash(r.Slot), r.Count, Size(r.BytesUp), Size(r.BytesDown))
	}
	if ds := s.Denials(); len(ds) > 0 {
		fmt.Fprintln(tw)
		fmt.Fprintln(tw, "DENIED\tHOST\tPORT\tCOUNT")
		for _, d := range ds {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", dash(d.Reason), d.Host, d.Port, d.Count)
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	var tail []string
	tail = append(tail, plural(s.Lines, "egress line"))
	if ids := s.Sessions(); len(ids) > 0 {
		tail = append(tail, plural(len(ids), "session")+" ("+strings.Join(ids, ", ")+")")
	}
	if s.Other > 0 {
		tail = append(tail, plural(s.Other, "other log line")+" ignored")
	}
	if s.Garbage > 0 {
		tail = append(tail, plural(s.Garbage, "malformed line")+" skipped")
	}
	if _, err := fmt.Fprintf(w, "\n%s\n", strings.Join(tail, "; ")); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// Size renders a byte count for a table: "512B", "1.5KiB", "20MiB".
func Size(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + "B"
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit || u == "TiB" {
			if f < 10 {
				return strconv.FormatFloat(f, 'f', 1, 64) + u
			}
			return strconv.FormatFloat(f, 'f', 0, 64) + u
		}
	}
	return "" // unreachable
}
