package policy

// RoutePlace returns where r, a route of p's lookups (HostRules.Routes),
// sits in p: "routes[2]". It returns "" for a route that is not one of
// p's, and for a nil or uncompiled p. It allocates nothing and is safe for
// concurrent use. The proxy names the deciding entry in its audit lines
// with it (docs/DESIGN.md, section 6).
func (p *Policy) RoutePlace(r *Route) string { return p.place(r) }

// AllowPlace is RoutePlace for an allow entry (HostRules.AllowedBy,
// HostRules.Allows): "allow[0]".
func (p *Policy) AllowPlace(a *Allow) string { return p.place(a) }

// BlockPlace is RoutePlace for a block entry (HostRules.HostBlock,
// HostRules.BlockFor): "block[1]".
func (p *Policy) BlockPlace(b *Block) string { return p.place(b) }

func (p *Policy) place(e any) string {
	if p == nil || p.c == nil {
		return ""
	}
	return p.c.places[e]
}
