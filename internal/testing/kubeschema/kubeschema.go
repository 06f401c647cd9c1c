package kubeschema

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/yannh/kubeconform/pkg/validator"
)

// schemas are the generated files, named as kubeconform looks them up.
//
//go:embed schemas/*.json
var schemas embed.FS

// location is kubeconform's schema-location template inside a directory
// holding the schemas: pod-v1.json, networkpolicy-networking-v1.json. A
// location ending in "json" is used as given (no "-standalone-strict"
// directory is appended), and a location not starting with "http" is read
// from disk by kubeconform's file loader only.
const location = "{{ .ResourceKind }}{{ .KindSuffix }}.json"

// Validate checks every object in manifests, a multi-document YAML (or
// JSON) stream, against the committed schemas in strict mode. It returns
// nil if there is at least one object and each is valid; otherwise one
// error per problem, joined, each naming the object (position, kind and
// name) and the field:
//
//	object 2 (Pod cork-proxy): spec.containers[0]: additional properties 'imagePullPolice' not allowed
//
// An object of a kind with no committed schema, or with no kind or
// apiVersion, is an error, never skipped and never looked up online.
// Empty documents (a leading "---") are ignored. Validate is safe for
// concurrent use.
func Validate(manifests []byte) error {
	c, err := shared()
	if err != nil {
		return err
	}
	var errs []error
	n := 0
	for _, res := range c.v.Validate("manifests", io.NopCloser(bytes.NewReader(manifests))) {
		if res.Status == validator.Empty {
			continue
		}
		n++
		if err := c.check(n, res); err != nil {
			errs = append(errs, err)
		}
	}
	if n == 0 {
		return errors.New("manifests: no objects")
	}
	return errors.Join(errs...)
}

// shared is the one validator every call uses. kubeconform compiles a
// kind's schema the first time it sees the kind and keeps it in memory;
// newChecker has it compile every committed schema up front, from a
// temporary directory that is gone before the first real object is read.
// An object of any other apiVersion and kind is reported as ErrNoSchema,
// whatever kubeconform's lookup in that removed directory found.
var shared = sync.OnceValues(newChecker)

// ErrNoSchema is (wrapped in) the error for an object whose apiVersion and
// kind have no committed schema.
var ErrNoSchema = errors.New("no schema committed for this apiVersion and kind")

// checker is a compiled validator and the apiVersion/kind pairs it has
// schemas for.
type checker struct {
	v     validator.Validator
	known map[[2]string]bool
}

func newChecker() (*checker, error) {
	dir, err := os.MkdirTemp("", "kubeschema-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	kinds, err := extract(dir)
	if err != nil {
		return nil, err
	}
	v, err := validator.New([]string{filepath.Join(dir, location)}, validator.Opts{Strict: true})
	if err != nil {
		return nil, fmt.Errorf("kubeconform: %w", err)
	}
	c := &checker{v: v, known: map[[2]string]bool{}}
	for _, k := range kinds {
		c.known[[2]string{k.apiVersion, k.kind}] = true
		doc := fmt.Sprintf("apiVersion: %s\nkind: %s\n", k.apiVersion, k.kind)
		for _, res := range v.Validate(k.file, io.NopCloser(strings.NewReader(doc))) {
			if res.Status == validator.Error {
				return nil, fmt.Errorf("schemas/%s: %w", k.file, res.Err)
			}
		}
	}
	return c, nil
}

// schemaKind is one committed schema and the apiVersion and kind it
// pins (gen writes each as a one-value enum).
type schemaKind struct{ file, apiVersion, kind string }

// extract writes the embedded schemas to dir and returns what each is for.
func extract(dir string) ([]schemaKind, error) {
	files, err := fs.Glob(schemas, "schemas/*.json")
	if err != nil {
		return nil, err
	}
	var kinds []schemaKind
	for _, f := range files {
		b, err := schemas.ReadFile(f)
		if err != nil {
			return nil, err
		}
		var s struct {
			Properties struct {
				APIVersion, Kind struct{ Enum []string }
			}
		}
		if err := json.Unmarshal(b, &s); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		if len(s.Properties.APIVersion.Enum) != 1 || len(s.Properties.Kind.Enum) != 1 {
			return nil, fmt.Errorf("%s: properties.apiVersion and properties.kind must each have a one-value enum", f)
		}
		kinds = append(kinds, schemaKind{filepath.Base(f), s.Properties.APIVersion.Enum[0], s.Properties.Kind.Enum[0]})
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			return nil, err
		}
	}
	return kinds, nil
}

// check turns one kubeconform result into nil or an error naming the object
// and, for a schema violation, each field.
func (c *checker) check(n int, res validator.Result) error {
	obj := fmt.Sprintf("object %d", n)
	sig, sigErr := res.Resource.Signature()
	if sig != nil && (sig.Kind != "" || sig.Name != "") {
		obj += " (" + strings.TrimSpace(sig.Kind+" "+sig.Name) + ")"
	}
	if sigErr == nil && !c.known[[2]string{sig.Version, sig.Kind}] {
		return fmt.Errorf("%s: apiVersion %q, kind %q: %w", obj, sig.Version, sig.Kind, ErrNoSchema)
	}
	switch res.Status {
	case validator.Valid:
		return nil
	case validator.Skipped:
		return fmt.Errorf("%s: skipped by kubeconform", obj)
	case validator.Invalid:
		if len(res.ValidationErrors) == 0 {
			return fmt.Errorf("%s: %w", obj, res.Err)
		}
		var errs []error
		for _, ve := range res.ValidationErrors {
			errs = append(errs, fmt.Errorf("%s: %s: %s", obj, field(ve.Path), ve.Msg))
		}
		return errors.Join(errs...)
	default:
		if res.Err == nil {
			return fmt.Errorf("%s: kubeconform status %d", obj, res.Status)
		}
		return fmt.Errorf("%s: %w", obj, res.Err)
	}
}

// field turns a JSON pointer ("/spec/containers/0") into the dotted form
// kubectl uses ("spec.containers[0]"). A key made only of digits is taken
// for a list index.
func field(pointer string) string {
	if pointer == "" || pointer == "/" {
		return "(top level)"
	}
	var b strings.Builder
	for _, seg := range strings.Split(strings.TrimPrefix(pointer, "/"), "/") {
		seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
		if _, err := strconv.Atoi(seg); err == nil {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return b.String()
}
