// Package settings owns the proxy's CORK_* settings: the variables and
// their flags (one table), their parsing into typed values with every
// error naming its variable or flag, and what is made from them: the
// proxy.Config shared by `cork proxy` and the in-process proxy of
// `cork run`, the environment of the docker backend's sidecar (a
// `cork proxy` in a container), and the readiness line `cork proxy`
// writes once it serves.
//
// Only cmd reads the process environment; this package receives it as a
// map. No value it renders (environment, readiness line, error) holds a
// token or the client credential.
package settings
