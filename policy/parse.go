package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"syscall"

	"go.yaml.in/yaml/v3"
)

// Parse decodes a policy file (YAML or JSON, one document, aliases and
// merge keys allowed) and validates it. Unknown keys are errors; all
// problems are returned at once (errors.Join), each an *Error naming its
// place and line, e.g. `routes[2].slot: unknown slot "gh" (line 9)`.
func Parse(data []byte) (*Policy, error) {
	var p Policy
	lines, err := Decode(data, &p)
	if err != nil {
		return nil, err
	}
	out, err := New(p)
	if err != nil {
		return nil, lines.Annotate(err)
	}
	return out, nil
}

// Load reads and parses the policy file at path; errors name the path,
// one line per problem. Anything but a regular file (a FIFO, a device, a
// directory) is refused without blocking, so a reload cannot hang.
func Load(path string) (*Policy, error) {
	// O_NONBLOCK: opening a FIFO would otherwise wait for a writer, and
	// the SIGHUP reload loop with it. It does not affect regular files.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("policy %s: not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	if len(data) > MaxFileSize {
		return nil, fmt.Errorf("policy %s: larger than %d bytes", path, MaxFileSize)
	}
	p, err := Parse(data)
	if err != nil {
		return nil, PrefixErrors(path, err)
	}
	return p, nil
}

// PrefixErrors puts prefix (a file name, a flag) in front of each of err's
// joined errors, so that every printed line names it. errors.As still
// finds each *Error.
func PrefixErrors(prefix string, err error) error {
	errs := unjoin(err)
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = fmt.Errorf("%s: %w", prefix, e)
	}
	return errors.Join(out...)
}

// Lines maps a place in a decoded file ("routes[0]", "routes[0].host",
// "slots.codex") to its 1-based line.
type Lines map[string]int

// Of returns the line of place, or of the nearest enclosing place that has
// one ("routes[0]" for "routes[0].slot" when the key is missing), or 0.
func (l Lines) Of(place string) int {
	for place != "" {
		if n, ok := l[place]; ok {
			return n
		}
		i := strings.LastIndexAny(place, ".[")
		if i < 0 {
			break
		}
		place = place[:i]
	}
	return 0
}

// Annotate sets the line of each *Error joined in err that has none, from
// l, and returns the errors joined again. Other errors pass unchanged.
func (l Lines) Annotate(err error) error {
	if err == nil {
		return nil
	}
	errs := unjoin(err)
	out := make([]error, len(errs))
	for i, e := range errs {
		out[i] = e
		if pe, ok := e.(*Error); ok && pe.Line == 0 {
			out[i] = &Error{Place: pe.Place, Line: l.Of(pe.Place), Err: pe.Err}
		}
	}
	return errors.Join(out...)
}

// Decode decodes one YAML (or JSON) document into v, a pointer to a struct
// whose yaml tags are the schema: Policy, or a caller's variant of it.
// Aliases and merge keys (<<) are resolved. Unknown keys and wrongly shaped
// values are reported with their place and line, all at once, before
// anything is decoded. A field tagged want:"..." describes its (or its
// elements') expected value; a field tagged refuse:"..." is a known key
// that is refused with that explanation. A struct with a shorthand (Allow)
// may also be a scalar. It returns the line of every place, for
// Lines.Annotate.
func Decode(data []byte, v any) (Lines, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("empty policy")
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var root yaml.Node
	if err := dec.Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("empty policy")
		}
		return nil, yamlError(err, data)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case err == nil:
		return nil, fmt.Errorf("line %d: more than one YAML document; a policy is one document", extra.Line)
	case !errors.Is(err, io.EOF):
		return nil, yamlError(err, data)
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	if isNull(deref(doc)) {
		return nil, errors.New("empty policy")
	}
	w := schemaWalk{lines: Lines{}}
	w.value(doc, reflect.TypeOf(v).Elem(), "", "")
	if len(w.errs) > 0 {
		return nil, errors.Join(w.errs...)
	}
	if err := doc.Decode(v); err != nil {
		return nil, yamlError(err, data)
	}
	return w.lines, nil
}

// yamlError turns a yaml error into one error per problem, without the
// library's "yaml: unmarshal errors:" preamble, and explains the usual
// cause of a syntax error: a tab in the indentation.
func yamlError(err error, data []byte) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, len(te.Errors))
		for i, e := range te.Errors {
			errs[i] = errors.New(strings.TrimSpace(e))
		}
		return errors.Join(errs...)
	}
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if _, serr := fmt.Sscanf(msg, "line %d:", &line); serr == nil && tabIndented(data, line) {
		msg += " (YAML indentation must use spaces, not tabs)"
	}
	return errors.New(msg)
}

// tabIndented reports whether line n (1-based) or the one before it is
// indented with a tab.
func tabIndented(data []byte, n int) bool {
	i := 0
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		i++
		if i < n-1 {
			continue
		}
		if i > n {
			break
		}
		indent := line[:len(line)-len(bytes.TrimLeft(line, " \t"))]
		if bytes.IndexByte(indent, '\t') >= 0 {
			return true
		}
	}
	return false
}

// schemaWalk checks a YAML tree against a Go type's yaml tags, collecting
// problems and the line of every place.
type schemaWalk struct {
	errs  []error
	lines Lines
}

func (w *schemaWalk) fail(n *yaml.Node, place, format string, args ...any) {
	w.errs = append(w.errs, &Error{Place: orDoc(place), Line: n.Line, Err: fmt.Errorf(format, args...)})
}

// orDoc names the document itself "policy".
func orDoc(place string) string {
	if place == "" {
		return "policy"
	}
	return place
}

// value checks n against t at place; want describes a scalar's expected
// value ("" for "a single value"). A null is accepted anywhere: it decodes
// to the zero value, which validation then judges.
func (w *schemaWalk) value(n *yaml.Node, t reflect.Type, place, want string) {
	n = deref(n)
	if isNull(n) {
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		w.value(n, t.Elem(), place, want)
	case reflect.Struct:
		short, isShort := reflect.Zero(t).Interface().(shorthand)
		switch {
		case isShort && n.Kind == yaml.ScalarNode:
			w.lines[join(place, short.shorthandField())] = n.Line
		case n.Kind != yaml.MappingNode && isShort && want != "":
			w.fail(n, place, "want %s or a mapping with %s", want, andList(fieldNames(t)))
		case n.Kind != yaml.MappingNode:
			w.fail(n, place, "want a mapping with %s", andList(fieldNames(t)))
		default:
			w.fields(n, t, place)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			w.fail(n, place, "want a mapping of names")
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			sub := join(place, k.Value)
			w.lines[sub] = k.Line
			w.value(n.Content[i+1], t.Elem(), sub, want)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			w.fail(n, place, "want a list")
			return
		}
		for i, e := range n.Content {
			sub := fmt.Sprintf("%s[%d]", place, i)
			w.lines[sub] = deref(e).Line
			w.value(e, t.Elem(), sub, want)
		}
	case reflect.Bool:
		switch {
		case n.Kind != yaml.ScalarNode:
			w.fail(n, place, "want a single value")
		case n.ShortTag() != "!!bool":
			w.fail(n, place, "want true or false, got %q", n.Value)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			if want == "" {
				want = "a single value"
			}
			w.fail(n, place, "want %s", want)
		}
	}
}

// shorthand is implemented by a schema struct (Allow) that may also be
// written as one scalar: the value of the field shorthandField names.
type shorthand interface{ shorthandField() string }

// fields checks a mapping's keys against struct t, following merge keys.
func (w *schemaWalk) fields(n *yaml.Node, t reflect.Type, place string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			w.merge(deref(v), t, place)
			continue
		}
		f, ok := field(t, k.Value)
		if !ok {
			w.fail(k, place, "unknown field %q (want %s)", k.Value, strings.Join(fieldNames(t), ", "))
			continue
		}
		sub := join(place, k.Value)
		w.lines[sub] = k.Line
		if msg := f.Tag.Get("refuse"); msg != "" {
			w.fail(k, sub, "%s", msg)
			continue
		}
		w.value(v, f.Type, sub, f.Tag.Get("want"))
	}
}

// merge checks the value of a merge key: a mapping, or a list of them.
func (w *schemaWalk) merge(v *yaml.Node, t reflect.Type, place string) {
	switch v.Kind {
	case yaml.MappingNode:
		w.fields(v, t, place)
	case yaml.SequenceNode:
		for _, e := range v.Content {
			w.merge(deref(e), t, place)
		}
	default:
		w.fail(v, place, "want a mapping to merge")
	}
}

// field returns t's field whose yaml name is name.
func field(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() && yamlName(f) == name && name != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldNames lists t's yaml field names in declaration order.
func fieldNames(t reflect.Type) []string {
	var names []string
	for i := range t.NumField() {
		if f := t.Field(i); f.IsExported() && yamlName(f) != "-" && f.Tag.Get("refuse") == "" {
			names = append(names, yamlName(f))
		}
	}
	return names
}

func yamlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
	if name == "" {
		return strings.ToLower(f.Name)
	}
	return name
}

// andList joins "a, b and c".
func andList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}

func join(place, name string) string {
	if place == "" {
		return name
	}
	return place + "." + name
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }
