package proxy

import (
	"errors"
	"fmt"
)

// CheckSessionID reports why id cannot be Config.SessionID (nil for
// the empty id, which means none).
func CheckSessionID(id string) error {
	if len(id) > MaxSessionIDLen {
		return fmt.Errorf("longer than %d bytes", MaxSessionIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return errors.New("only letters, digits, '-', '_' and '.'")
		}
	}
	return nil
}
