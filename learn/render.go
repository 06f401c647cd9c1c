package learn

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/cork-sh/cork/policy"
	"go.yaml.in/yaml/v3"
)

// Render writes a policy file for `cork run --policy`: header (comment
// lines, each written after "# "), then base (an existing policy file's
// text, "" for none) with allow added at the end of its allow list,
// keeping base's comments and order. It returns an error when base is not
// a YAML mapping; the result is checked by the caller's parser.
func Render(header []string, base []byte, allow []policy.Allow) ([]byte, error) {
	var doc yaml.Node
	if len(bytes.TrimSpace(base)) > 0 {
		if err := yaml.Unmarshal(base, &doc); err != nil {
			return nil, fmt.Errorf("read the policy: %w", err)
		}
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode, Tag: "!!map"}}}
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("the policy is not a mapping of routes, allow and block")
	}
	if len(allow) > 0 {
		m := doc.Content[0]
		var list *yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == "allow" {
				list = m.Content[i+1]
			}
		}
		if list == nil {
			list = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
			m.Content = append(m.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "allow"}, list)
		}
		if list.Kind != yaml.SequenceNode {
			return nil, fmt.Errorf("allow: not a list")
		}
		list.Style = 0
		for i, a := range allow {
			var n yaml.Node
			if err := n.Encode(a); err != nil {
				return nil, fmt.Errorf("allow entry %s: %w", a.Host, err)
			}
			if n.Kind == yaml.MappingNode {
				n.Style = yaml.FlowStyle
			}
			if i == 0 {
				n.HeadComment = "learned by cork run --learn"
			}
			list.Content = append(list.Content, &n)
		}
	}
	var b bytes.Buffer
	for _, h := range header {
		b.WriteString("# " + strings.Join(strings.Fields(h), " ") + "\n")
	}
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("render the policy: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render the policy: %w", err)
	}
	return b.Bytes(), nil
}
