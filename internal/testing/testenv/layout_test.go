package testenv

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/cork-sh/cork"

// testOnly is the directory of test-only packages (docs/DESIGN.md, the
// layout table): product packages never import them, so the cork binary
// carries no fake, stand-in or test helper.
const testOnly = module + "/internal/testing/"

func TestProductImportsNoTestCode(t *testing.T) {
	goTool, err := exec.LookPath("go")
	if err != nil {
		Missing(t, "needs the go tool on PATH")
	}
	out, err := exec.Command(goTool, "list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`, module+"/...").Output()
	if err != nil {
		t.Fatalf("go list %s/...: %v", module, err)
	}
	var product int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, deps, _ := strings.Cut(line, " ")
		if strings.HasPrefix(pkg+"/", testOnly) {
			continue
		}
		product++
		for _, dep := range strings.Fields(deps) {
			if strings.HasPrefix(dep, testOnly) {
				t.Errorf("product package %s depends on test-only %s", pkg, dep)
			}
		}
	}
	if product == 0 {
		t.Fatalf("go list %s/... listed no product package:\n%s", module, out)
	}
}
