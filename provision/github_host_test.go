package provision

import (
	"strings"
	"testing"
)

// An Enterprise host that is a public suffix would allow every host under
// it (*.HOST, blind tunnels): "com" lets the sandbox reach any .com host,
// "github.io" anyone's pages. Intranet names without a dot still pass.
func TestGitHubPublicSuffixHost(t *testing.T) {
	for _, h := range []string{"com", "co.uk", "github.io", "COM.", "s3.amazonaws.com"} {
		_, err := Build(Options{HostEnv: map[string]string{"GH_ENTERPRISE_TOKEN": "x"}}, GitHub{Host: h})
		if err == nil || !strings.Contains(err.Error(), "github: host: ") || !strings.Contains(err.Error(), "public suffix") {
			t.Errorf("Build(GitHub{Host: %q}) error = %v, want one naming the host as a public suffix", h, err)
		}
	}
	for _, h := range []string{"ghe", "ghe.example.com", "example.com", "ghe.cork.test"} {
		if err := (GitHub{Host: h}).Validate(); err != nil {
			t.Errorf("GitHub{Host: %q}.Validate() = %v, want nil", h, err)
		}
	}
}
