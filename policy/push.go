package policy

import (
	"path"
	"strings"
)

// Push restricts the refs a git push may update (the ref-update commands of
// a git-receive-pack request). The zero Push allows no ref at all; a nil
// *Push allows every ref. A Push is a plain value: safe for concurrent use
// when not modified.
type Push struct {
	// Branches are glob patterns (path.Match: '*' and '?' do not cross
	// '/', so "agent/*" allows agent/x but not agent/x/y) on the branch
	// name after refs/heads/. Empty: no branch may be pushed.
	Branches []string `yaml:"branches,omitempty" json:"branches,omitempty" want:"a branch pattern"`
	// Tags allows creating and updating refs/tags/*.
	Tags bool `yaml:"tags,omitempty" json:"tags,omitempty"`
	// Delete allows deleting refs, still only those the rest allows.
	Delete bool `yaml:"delete,omitempty" json:"delete,omitempty"`
}

// Allows reports whether a push may update ref (a full name such as
// "refs/heads/agent/x"), or delete it when del. A nil Push allows
// everything. Otherwise refs/heads/NAME needs NAME to match one of
// Branches, refs/tags/* needs Tags, a delete also needs Delete, and any
// other ref (refs/notes/*, refs/pull/*, HEAD, ...) is refused.
func (p *Push) Allows(ref string, del bool) bool {
	if p == nil {
		return true
	}
	if del && !p.Delete {
		return false
	}
	if name, ok := strings.CutPrefix(ref, "refs/heads/"); ok {
		if name == "" {
			return false
		}
		for _, pat := range p.Branches {
			if ok, err := path.Match(pat, name); ok && err == nil {
				return true
			}
		}
		return false
	}
	if name, ok := strings.CutPrefix(ref, "refs/tags/"); ok {
		return p.Tags && name != ""
	}
	return false
}
