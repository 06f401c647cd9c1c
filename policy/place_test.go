package policy

import "testing"

const placeSrc = `
slots:
  gh: {placeholder: ghp_cork000000000000000000000000000000}
routes:
  - {host: api.github.com, slot: gh, methods: [GET]}
  - {host: github.com, slot: gh}
allow:
  - pypi.org
  - "*.example.com"
  - {host: docs.example.com, path: /v1}
  - files.pythonhosted.org
block:
  - {host: evil.example.com}
  - {host: github.com, path: /login/oauth}
`

func TestPlaces(t *testing.T) {
	p := mustParsePolicy(t, placeSrc)
	tests := []struct {
		name, host string
		port       int
		route      string // place of Routes[0]
		allowedBy  string
		hostBlock  string
		pathBlock  string // place of PathBlocks[0]
		scoped     string // place of Allows[0]
	}{
		{name: "route", host: "api.github.com", port: 443, route: "routes[0]"},
		{name: "second route with path block", host: "github.com", port: 443, route: "routes[1]", pathBlock: "block[1]"},
		{name: "plain allow", host: "files.pythonhosted.org", port: 443, allowedBy: "allow[3]"},
		{name: "wildcard allow", host: "a.example.com", port: 80, allowedBy: "allow[1]"},
		{name: "exact scoped before wildcard", host: "docs.example.com", port: 443, allowedBy: "allow[2]", scoped: "allow[2]"},
		{name: "host block", host: "evil.example.com", port: 443, hostBlock: "block[0]"},
		{name: "unlisted", host: "npmjs.org", port: 443},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := p.Lookup(tt.host, tt.port)
			var got struct{ route, allowedBy, hostBlock, pathBlock, scoped string }
			if len(r.Routes) > 0 {
				got.route = p.RoutePlace(r.Routes[0])
			}
			got.allowedBy = p.AllowPlace(r.AllowedBy)
			got.hostBlock = p.BlockPlace(r.HostBlock)
			if len(r.PathBlocks) > 0 {
				got.pathBlock = p.BlockPlace(r.PathBlocks[0])
			}
			if len(r.Allows) > 0 {
				got.scoped = p.AllowPlace(r.Allows[0])
			}
			want := struct{ route, allowedBy, hostBlock, pathBlock, scoped string }{tt.route, tt.allowedBy, tt.hostBlock, tt.pathBlock, tt.scoped}
			if got != want {
				t.Errorf("places of Lookup(%q, %d) = %+v, want %+v", tt.host, tt.port, got, want)
			}
			if (r.AllowedBy != nil) != r.Allowed {
				t.Errorf("Lookup(%q, %d): AllowedBy = %v with Allowed = %v", tt.host, tt.port, r.AllowedBy, r.Allowed)
			}
		})
	}
	if got := p.RoutePlace(&Route{Host: "api.github.com"}); got != "" {
		t.Errorf("RoutePlace(foreign route) = %q, want empty", got)
	}
	var nilPolicy *Policy
	if got := nilPolicy.BlockPlace(nil); got != "" {
		t.Errorf("nil Policy BlockPlace = %q, want empty", got)
	}
	if n := testing.AllocsPerRun(100, func() {
		r := p.Lookup("api.github.com", 443)
		_ = p.RoutePlace(r.Routes[0])
	}); n != 0 {
		t.Errorf("Lookup+RoutePlace allocates %v times, want 0", n)
	}
}
