package policy

import (
	"bytes"
	"fmt"

	"go.yaml.in/yaml/v3"
)

// marshalHeader starts every rendered policy file.
const marshalHeader = "# cork policy, rendered by cork. Placeholders only: the real values\n" +
	"# reach the proxy separately (tokens file or stdin).\n"

// Marshal renders p as a policy file (YAML) that Parse reads back as the
// same policy: for a proxy in another process (a sidecar) that needs a
// file. It holds placeholders only; a slot's value never is in a Policy.
func Marshal(p Policy) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(marshalHeader)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(p); err != nil {
		return nil, fmt.Errorf("render policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render policy: %w", err)
	}
	return b.Bytes(), nil
}
