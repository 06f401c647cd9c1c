// Package kubeschema validates Kubernetes manifests strictly and offline,
// the way the API server's strict field validation would: an unknown
// field, a wrong type or a missing required field is an error. It runs
// kubeconform (pkg/validator) against the JSON schemas committed in
// schemas/, which are generated from the OpenAPI v2 document of the
// Kubernetes release cork targets, for the kinds cork creates only. A kind
// with no schema there is an error: nothing is ever downloaded.
//
// Regenerate the schemas (after changing the release or the kinds in
// gen/main.go) with:
//
//	go generate ./internal/testing/kubeschema
//
// which reads the document from the module cache (downloading
// k8s.io/kubernetes once if needed, without adding it to go.mod).
// TestSchemasUpToDate fails when the committed files differ from what gen
// would write.
//
// Test-only: product code never imports this package.
package kubeschema

//go:generate go run ./gen -out schemas
