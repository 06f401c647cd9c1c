// Package upstreamtest is the recording fake upstream that cork's tests
// share: an httptest server on loopback (HTTPS with a certificate from a
// throwaway internal/localca CA, or plain HTTP) that records each
// request's method, host, path, query, headers and body, then answers it
// with the test's handler. Tests point the proxy at it with Resolve and
// trust its CA, then assert on what arrived (which token, or that nothing
// did).
//
// A Recorder is the recording half alone, an http.Handler, for tests that
// record what several servers saw in one place or that wrap it.
//
// Test-only: product code never imports this package.
package upstreamtest
