package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFileName(t *testing.T) {
	t.Parallel()
	tests := map[GVK]string{
		{"", "v1", "Pod"}: "pod-v1.json",
		{"networking.k8s.io", "v1", "NetworkPolicy"}:              "networkpolicy-networking-v1.json",
		{"rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"}: "clusterrolebinding-rbac-v1.json",
	}
	for g, want := range tests {
		if got := g.FileName(); got != want {
			t.Errorf("%+v.FileName() = %q, want %q", g, got, want)
		}
	}
}

// spec is a small OpenAPI v2 document with each construct the converter
// handles.
const spec = `{"swagger":"2.0","definitions":{
 "io.k8s.api.core.v1.Widget":{
  "description":"dropped",
  "x-kubernetes-group-version-kind":[{"group":"","version":"v1","kind":"Widget"}],
  "properties":{
   "apiVersion":{"type":"string"},
   "kind":{"type":"string"},
   "spec":{"$ref":"#/definitions/io.k8s.api.core.v1.WidgetSpec","description":"dropped"}
  }},
 "io.k8s.api.core.v1.WidgetSpec":{
  "required":["name"],
  "properties":{
   "name":{"type":"string"},
   "port":{"$ref":"#/definitions/io.k8s.apimachinery.pkg.util.intstr.IntOrString"},
   "cpu":{"$ref":"#/definitions/io.k8s.apimachinery.pkg.api.resource.Quantity"},
   "labels":{"type":"object","additionalProperties":{"type":"string"}},
   "items":{"type":"array","items":{"$ref":"#/definitions/io.k8s.api.core.v1.Item"},"x-kubernetes-list-type":"atomic"}
  }},
 "io.k8s.api.core.v1.Item":{"properties":{"n":{"type":"integer","format":"int32"}}},
 "io.k8s.apimachinery.pkg.util.intstr.IntOrString":{"type":"string","format":"int-or-string"},
 "io.k8s.apimachinery.pkg.api.resource.Quantity":{"type":"string"}
}}`

const want = `{"additionalProperties":false,"properties":{` +
	`"apiVersion":{"enum":["v1"],"type":["string","null"]},` +
	`"kind":{"enum":["Widget"],"type":["string","null"]},` +
	`"spec":{"additionalProperties":false,"properties":{` +
	`"cpu":{"oneOf":[{"type":"string"},{"type":"number"},{"type":"null"}]},` +
	`"items":{"items":{"additionalProperties":false,"properties":{"n":{"format":"int32","type":["integer","null"]}},"type":"object"},"type":["array","null"]},` +
	`"labels":{"additionalProperties":{"type":"string"},"type":["object","null"]},` +
	`"name":{"type":"string"},` +
	`"port":{"oneOf":[{"type":"string"},{"type":"integer"},{"type":"null"}]}` +
	`},"required":["name"],"type":["object","null"]}},"type":"object"}` + "\n"

func TestGenerate(t *testing.T) {
	t.Parallel()
	files, err := Generate([]byte(spec), []GVK{{"", "v1", "Widget"}})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	got := string(files["widget-v1.json"])
	if got != want {
		t.Errorf("Generate: widget-v1.json =\n%s\nwant\n%s", got, want)
	}
	if len(files) != 1 {
		t.Errorf("Generate: %d files, want 1", len(files))
	}
	var v any
	if err := json.Unmarshal([]byte(got), &v); err != nil {
		t.Errorf("Generate: widget-v1.json is not JSON: %v", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	t.Parallel()
	widget := GVK{"", "v1", "Widget"}
	tests := []struct {
		name string
		edit func(defs map[string]any)
		gvk  GVK
		want string
	}{
		{"kind not in document", nil, GVK{"apps", "v1", "Deployment"}, "apps/v1 Deployment: no definition"},
		{"recursive type", func(defs map[string]any) {
			defs["io.k8s.api.core.v1.Item"] = map[string]any{"properties": map[string]any{
				"next": map[string]any{"$ref": "#/definitions/io.k8s.api.core.v1.Item"}}}
		}, widget, "recursive"},
		{"unknown keyword", func(defs map[string]any) {
			defs["io.k8s.api.core.v1.Item"] = map[string]any{"allOf": []any{}}
		}, widget, `keyword "allOf"`},
		{"preserve unknown fields", func(defs map[string]any) {
			defs["io.k8s.api.core.v1.Item"] = map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}
		}, widget, "x-kubernetes-preserve-unknown-fields: not handled"},
		{"dangling ref", func(defs map[string]any) {
			delete(defs, "io.k8s.api.core.v1.Item")
		}, widget, "no such definition"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var doc map[string]any
			if err := json.Unmarshal([]byte(spec), &doc); err != nil {
				t.Fatal(err)
			}
			if tc.edit != nil {
				tc.edit(doc["definitions"].(map[string]any))
			}
			b, _ := json.Marshal(doc)
			_, err := Generate(b, []GVK{tc.gvk})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Generate(%s) = %v, want an error containing %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestKindsDistinctFiles(t *testing.T) {
	t.Parallel()
	seen := map[string]GVK{}
	for _, g := range Kinds {
		if prev, dup := seen[g.FileName()]; dup {
			t.Errorf("%+v and %+v both write %s", prev, g, g.FileName())
		}
		seen[g.FileName()] = g
	}
}
