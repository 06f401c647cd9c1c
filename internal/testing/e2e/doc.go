// Package e2e holds the programs that end-to-end tests run in containers:
// fakeapi, an HTTPS API that records the credential it receives, and
// fakeagent, a sandboxed agent that calls it through cork, probes the
// sandbox's isolation and dumps what it can see. They are built static
// (CGO_ENABLED=0) into FROM-scratch images by the tests; they are not part
// of cork.
package e2e
