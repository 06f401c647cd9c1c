// Command gen writes the strict, standalone JSON schemas that package
// kubeschema validates cork's Kubernetes objects against, one file per kind
// in kubeconform's layout ({kind}[-{group}]-{version}.json, lower case, the
// group's first label, none for the core group).
//
// It reads the OpenAPI v2 document the API server serves (/openapi/v2),
// as shipped in the k8s.io/kubernetes module at api/openapi-spec/swagger.json.
// The module is located with `go mod download -json` run outside cork's
// module, so cork's go.mod never requires k8s.io/kubernetes; -spec names
// the document instead.
//
// The conversion follows openapi2jsonschema's --kubernetes --stand-alone
// --strict --expanded mode, which kubeconform's published schemas use:
//   - every $ref is inlined, so a schema needs no other file and no network;
//   - every object that lists properties gets additionalProperties: false,
//     so an unknown (misspelt) field is an error, as the API server's
//     strict field validation makes it;
//   - IntOrString is a string or an integer, Quantity a string or a number;
//   - apiVersion and kind are pinned (enum) to the kind's group-version-kind;
//   - a property that is not required may be null (the API server reads a
//     null as "unset"), a required one may not.
//
// Descriptions and x-kubernetes-* extensions are dropped: they do not
// validate anything and would multiply the size. No "$schema" is written:
// kubeconform compiles the files as draft 4, and a meta-schema URL is one
// more thing a validator might try to fetch.
//
// Usage (from package kubeschema, see its doc.go):
//
//	go generate ./internal/testing/kubeschema
//	go run ./internal/testing/kubeschema/gen -spec swagger.json -out DIR
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// KubernetesModule is the module whose OpenAPI document the schemas come
// from: the API server release cork is tested against.
const KubernetesModule = "k8s.io/kubernetes@v1.32.4"

// specPath is the OpenAPI v2 document inside KubernetesModule.
const specPath = "api/openapi-spec/swagger.json"

// GVK is one kind cork creates.
type GVK struct{ Group, Version, Kind string }

// Kinds are the kinds cork creates or ships (deploy/kubernetes/rbac.yaml);
// a schema is written for each and for nothing else.
var Kinds = []GVK{
	{"", "v1", "Namespace"},
	{"", "v1", "Pod"},
	{"", "v1", "Service"},
	{"", "v1", "ConfigMap"},
	{"", "v1", "Secret"},
	{"", "v1", "ServiceAccount"},
	{"networking.k8s.io", "v1", "NetworkPolicy"},
	{"rbac.authorization.k8s.io", "v1", "Role"},
	{"rbac.authorization.k8s.io", "v1", "RoleBinding"},
	{"rbac.authorization.k8s.io", "v1", "ClusterRole"},
	{"rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"},
}

// FileName is the file kubeconform looks for when its schema location
// ends in "/{{ .ResourceKind }}{{ .KindSuffix }}.json" (kubeconform's
// pkg/registry schemaPath): pod-v1.json, networkpolicy-networking-v1.json.
func (g GVK) FileName() string {
	name := strings.ToLower(g.Kind)
	if g.Group != "" {
		first, _, _ := strings.Cut(g.Group, ".")
		name += "-" + strings.ToLower(first)
	}
	return name + "-" + strings.ToLower(g.Version) + ".json"
}

// APIVersion is the object's apiVersion field: "v1", "networking.k8s.io/v1".
func (g GVK) APIVersion() string {
	if g.Group == "" {
		return g.Version
	}
	return g.Group + "/" + g.Version
}

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	spec := fs.String("spec", "", "OpenAPI v2 document (default: "+specPath+" in "+KubernetesModule+", found with go mod download)")
	out := fs.String("out", "schemas", "directory to write the schemas to")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *spec == "" {
		dir, err := moduleDir(ctx, KubernetesModule)
		if err != nil {
			return err
		}
		*spec = filepath.Join(dir, specPath)
	}
	doc, err := os.ReadFile(*spec)
	if err != nil {
		return fmt.Errorf("-spec: %w", err)
	}
	files, err := Generate(doc, Kinds)
	if err != nil {
		return fmt.Errorf("-spec %s: %w", *spec, err)
	}
	return write(*out, files)
}

// moduleDir downloads (or finds in the module cache) module@version and
// returns its directory. It runs in an empty directory so that no go.mod,
// cork's included, is read or changed.
func moduleDir(ctx context.Context, module string) (string, error) {
	tmp, err := os.MkdirTemp("", "kubeschema-gen-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "mod", "download", "-json", module)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	var res struct{ Dir, Error string }
	if jerr := json.Unmarshal(stdout, &res); jerr == nil && res.Error != "" {
		return "", fmt.Errorf("go mod download %s: %s", module, res.Error)
	}
	if err != nil {
		return "", fmt.Errorf("go mod download %s: %w: %s", module, err, strings.TrimSpace(stderr.String()))
	}
	if res.Dir == "" {
		return "", fmt.Errorf("go mod download %s: no Dir in %q", module, stdout)
	}
	return res.Dir, nil
}

// write replaces dir's *.json files with files (name -> content), so a kind
// dropped from Kinds leaves no stale schema behind.
func write(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	for _, f := range old {
		if _, keep := files[filepath.Base(f)]; !keep {
			if err := os.Remove(f); err != nil {
				return err
			}
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Generate converts the OpenAPI v2 document doc into one strict standalone
// schema per kind, keyed by file name. Output is deterministic (keys
// sorted, compact, one trailing newline).
func Generate(doc []byte, kinds []GVK) (map[string][]byte, error) {
	var spec struct {
		Swagger     string                    `json:"swagger"`
		Definitions map[string]map[string]any `json:"definitions"`
	}
	if err := json.Unmarshal(doc, &spec); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if spec.Swagger != "2.0" {
		return nil, fmt.Errorf("swagger %q: want an OpenAPI v2 document (\"2.0\")", spec.Swagger)
	}
	byGVK, err := index(spec.Definitions)
	if err != nil {
		return nil, err
	}
	files := make(map[string][]byte, len(kinds))
	var errs []error
	for _, g := range kinds {
		name, ok := byGVK[g]
		if !ok {
			errs = append(errs, fmt.Errorf("%s %s: no definition has this x-kubernetes-group-version-kind", g.APIVersion(), g.Kind))
			continue
		}
		c := converter{defs: spec.Definitions}
		s, err := c.root(name, g)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		b, err := json.Marshal(s)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		files[g.FileName()] = append(b, '\n')
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return files, nil
}

// index maps each group-version-kind to the one definition that carries
// it in x-kubernetes-group-version-kind.
func index(defs map[string]map[string]any) (map[GVK]string, error) {
	byGVK := map[GVK]string{}
	names := make([]string, 0, len(defs))
	for name := range defs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		list, _ := defs[name]["x-kubernetes-group-version-kind"].([]any)
		for _, e := range list {
			m, _ := e.(map[string]any)
			g := GVK{str(m["group"]), str(m["version"]), str(m["kind"])}
			if prev, dup := byGVK[g]; dup {
				return nil, fmt.Errorf("%s and %s both claim %s %s", prev, name, g.APIVersion(), g.Kind)
			}
			byGVK[g] = name
		}
	}
	return byGVK, nil
}

func str(v any) string { s, _ := v.(string); return s }

const (
	refPrefix   = "#/definitions/"
	intOrString = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
	quantity    = "io.k8s.apimachinery.pkg.api.resource.Quantity"
)

// converter inlines one kind's definitions. stack holds the definitions
// being expanded, so a recursive type is an error rather than a hang.
type converter struct {
	defs  map[string]map[string]any
	stack []string
}

func (c *converter) root(name string, g GVK) (map[string]any, error) {
	s, err := c.ref(refPrefix + name)
	if err != nil {
		return nil, err
	}
	props, _ := s["properties"].(map[string]any)
	for field, val := range map[string]string{"apiVersion": g.APIVersion(), "kind": g.Kind} {
		p, ok := props[field].(map[string]any)
		if !ok {
			return nil, fmt.Errorf("no %s property", field)
		}
		p["enum"] = []any{val}
	}
	return s, nil
}

func (c *converter) ref(ref string) (map[string]any, error) {
	name, ok := strings.CutPrefix(ref, refPrefix)
	if !ok {
		return nil, fmt.Errorf("$ref %q: only %s... references are supported", ref, refPrefix)
	}
	switch name {
	case intOrString:
		return oneOf("string", "integer"), nil
	case quantity:
		// The API server's Quantity parser takes a JSON number too, and so
		// does every tool that writes manifests (cpu: 1).
		return oneOf("string", "number"), nil
	}
	def, ok := c.defs[name]
	if !ok {
		return nil, fmt.Errorf("$ref %q: no such definition", ref)
	}
	if slices.Contains(c.stack, name) {
		return nil, fmt.Errorf("$ref %q: recursive (%s)", ref, strings.Join(c.stack, " -> "))
	}
	c.stack = append(c.stack, name)
	defer func() { c.stack = c.stack[:len(c.stack)-1] }()
	s, err := c.schema(def)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return s, nil
}

func oneOf(types ...string) map[string]any {
	var alts []any
	for _, t := range types {
		alts = append(alts, map[string]any{"type": t})
	}
	return map[string]any{"oneOf": alts}
}

// schema converts one OpenAPI schema object. Keys it does not know are an
// error: a newer document using more of JSON Schema must be looked at, not
// silently half-converted.
func (c *converter) schema(in map[string]any) (map[string]any, error) {
	if ref, ok := in["$ref"].(string); ok {
		// OpenAPI v2 ignores a $ref's siblings (here: description).
		return c.ref(ref)
	}
	if in["format"] == "int-or-string" {
		return oneOf("string", "integer"), nil
	}
	out := map[string]any{}
	for k, v := range in {
		switch {
		case k == "x-kubernetes-preserve-unknown-fields":
			// Would need additionalProperties left open; no kind cork uses has it.
			return nil, fmt.Errorf("%s: not handled", k)
		case k == "description" || strings.HasPrefix(k, "x-"):
		case k == "type" || k == "format" || k == "required" || k == "enum":
			out[k] = v
		case k == "items":
			m, ok := v.(map[string]any)
			if !ok {
				return nil, fmt.Errorf("items: not a schema object")
			}
			s, err := c.schema(m)
			if err != nil {
				return nil, fmt.Errorf("items: %w", err)
			}
			out[k] = s
		case k == "additionalProperties":
			m, ok := v.(map[string]any)
			if !ok {
				out[k] = v // a boolean
				continue
			}
			s, err := c.schema(m)
			if err != nil {
				return nil, fmt.Errorf("additionalProperties: %w", err)
			}
			out[k] = s
		case k == "properties":
			props, err := c.properties(v, in["required"])
			if err != nil {
				return nil, err
			}
			out[k] = props
		default:
			return nil, fmt.Errorf("schema keyword %q: not handled", k)
		}
	}
	if _, ok := out["properties"]; ok {
		if _, set := out["additionalProperties"]; !set {
			out["additionalProperties"] = false
		}
		if _, set := out["type"]; !set {
			out["type"] = "object"
		}
	}
	return out, nil
}

func (c *converter) properties(v, required any) (map[string]any, error) {
	in, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("properties: not an object")
	}
	req := map[string]bool{}
	list, _ := required.([]any)
	for _, r := range list {
		req[str(r)] = true
	}
	out := make(map[string]any, len(in))
	for name, p := range in {
		m, ok := p.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("properties.%s: not a schema object", name)
		}
		s, err := c.schema(m)
		if err != nil {
			return nil, fmt.Errorf("properties.%s: %w", name, err)
		}
		if !req[name] {
			nullable(s)
		}
		out[name] = s
	}
	return out, nil
}

// nullable lets s also match null.
func nullable(s map[string]any) {
	if t, ok := s["type"].(string); ok {
		s["type"] = []any{t, "null"}
		return
	}
	if alts, ok := s["oneOf"].([]any); ok {
		s["oneOf"] = append(alts, map[string]any{"type": "null"})
	}
	// No type: any value, null included.
}
