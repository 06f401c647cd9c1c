package launch

// withSessionID returns spec with Proxy.Settings.SessionID set, so that
// the proxy's log lines carry the session (docs/DESIGN.md, section 6): the
// id given (CORK_SESSION_ID), else the backend's own (the one in its
// container and pod names), else a fresh one. spec itself is not modified.
func withSessionID(spec *Spec, sb sandbox) *Spec {
	if spec.Proxy.Settings.SessionID != "" {
		return spec
	}
	c := *spec
	if n, ok := sb.(interface{ sessionID() string }); ok {
		c.Proxy.Settings.SessionID = n.sessionID()
	} else {
		c.Proxy.Settings.SessionID = newSessionID()
	}
	return &c
}

func (s *dockerSandbox) sessionID() string { return s.id }
