// Package auditlog reads the proxy's audit log (docs/DESIGN.md, section 6):
// the JSON "egress" lines, one per decision. It sums them up by decision,
// host, port and credential slot, lists the denials by reason, and derives
// the allow: entries a run's not_allowed denials were missing, for
// `cork audit`.
//
// Reading is lenient: a log also holds other lines (start-up messages,
// console-format lines, a relay's noise); lines that are not JSON objects
// are counted as garbage and skipped, JSON lines that are not egress lines
// are ignored. Audit lines hold no secret (the proxy never writes one), and
// nothing here adds any.
package auditlog
