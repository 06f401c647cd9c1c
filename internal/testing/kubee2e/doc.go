// Package kubee2e holds the end-to-end tests of `cork run --backend
// kubernetes` on a real single-node cluster (package kubecluster): the
// real cork binary, its image imported into the node, the fake agent in
// the agent pod and a fake HTTPS upstream on the node's address, reached
// only through the proxy. It has no code outside its tests.
package kubee2e
