package fakeupstream

import (
	"net/http"
	"net/http/cgi"
	"os/exec"
)

// GitHubUser is the Basic-auth user git sends with a token.
const GitHubUser = "x-access-token"

// gitHub serves github.com's smart HTTP git protocol with the real
// git http-backend, behind Basic auth that accepts only the real token.
// Like GitHub, it challenges first: git sends credentials only after a 401.
func (s *Server) gitHub(w http.ResponseWriter, r *http.Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != GitHubUser || s.cfg.GitHubToken == "" || pass != s.cfg.GitHubToken {
		w.Header().Set("WWW-Authenticate", `Basic realm="GitHub"`)
		http.Error(w, "fakeupstream: authentication required", http.StatusUnauthorized)
		return
	}
	git, err := exec.LookPath("git")
	if s.cfg.GitProjectRoot == "" || err != nil {
		http.NotFound(w, r)
		return
	}
	h := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + s.cfg.GitProjectRoot, "GIT_HTTP_EXPORT_ALL=1", "REMOTE_USER=" + user},
	}
	h.ServeHTTP(w, r)
}
