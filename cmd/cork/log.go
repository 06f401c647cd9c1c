package main

import "github.com/rs/zerolog"

// The audit lines (docs/DESIGN.md, section 6) use "msg" for the message, as
// most JSON log tools expect; zerolog's default is "message". The field name
// is process-wide in zerolog, so the binary sets it once, before any logger
// is built.
func init() {
	zerolog.MessageFieldName = "msg"
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
}
