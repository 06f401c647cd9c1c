package fakeupstream

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
)

// GitHubAPIHost is the GitHub REST and GraphQL API.
const GitHubAPIHost = "api.github.com"

// GitHubEnterpriseHost is a GitHub Enterprise Server: the API under
// /api/v3 (GraphQL at /api/graphql) and git, on one host.
const GitHubEnterpriseHost = "ghe.cork.test"

// GitHubUserLogin is the login GET /user answers, and the owner of every
// repository the fake knows.
const GitHubUserLogin = "cork-compat"

// GitHubRepoDescription is the description of every repository the fake
// knows; gh repo view prints it.
const GitHubRepoDescription = "cork compat fixture"

// gitHubAPI serves what gh 2.23 calls for `gh api /user` and
// `gh repo view OWNER/REPO`: GET /user, POST /graphql (the repository
// query, and viewer { login }), GET /repos/OWNER/REPO/readme. It accepts
// only "Authorization: token <GitHubToken>", gh's scheme, and answers 401
// like GitHub otherwise.
func (s *Server) gitHubAPI(w http.ResponseWriter, r *http.Request) {
	if s.cfg.GitHubToken == "" || r.Header.Get("Authorization") != "token "+s.cfg.GitHubToken {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"})
		return
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/user":
		writeJSON(w, http.StatusOK, map[string]any{"login": GitHubUserLogin, "id": 1, "type": "User", "name": "cork compat"})
	case r.Method == http.MethodPost && r.URL.Path == "/graphql":
		s.gitHubGraphQL(w, r)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/repos/") && strings.HasSuffix(r.URL.Path, "/readme"):
		parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
		if len(parts) != 4 {
			writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found"})
			return
		}
		writeJSON(w, http.StatusOK, map[string]any{
			"name":     "README.md",
			"encoding": "base64",
			"content":  base64.StdEncoding.EncodeToString([]byte("# " + parts[2] + "\n\n" + s.cfg.Reply + "\n")),
			"html_url": "https://github.com/" + parts[1] + "/" + parts[2] + "/blob/main/README.md",
		})
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"message": "Not Found", "documentation_url": "https://docs.github.com/rest"})
	}
}

// gitHubEnterprise serves GitHubEnterpriseHost: /api/v3/... and
// /api/graphql as api.github.com serves /... and /graphql (the token
// scheme), anything else as github.com's git (Basic).
func (s *Server) gitHubEnterprise(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/api/graphql":
		r.URL.Path = "/graphql"
		s.gitHubAPI(w, r)
	case strings.HasPrefix(r.URL.Path, "/api/v3/"):
		r.URL.Path = strings.TrimPrefix(r.URL.Path, "/api/v3")
		s.gitHubAPI(w, r)
	default:
		s.gitHub(w, r)
	}
}

// gitHubGraphQL answers gh's repository query (owner and name from its
// variables) and viewer { login }; other queries get a GraphQL error.
func (s *Server) gitHubGraphQL(w http.ResponseWriter, r *http.Request) {
	var q struct {
		Query     string         `json:"query"`
		Variables map[string]any `json:"variables"`
	}
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": "Problems parsing JSON"})
		return
	}
	data := map[string]any{}
	if strings.Contains(q.Query, "repository(") {
		owner, _ := q.Variables["owner"].(string)
		name, _ := q.Variables["name"].(string)
		if owner == "" || name == "" {
			writeJSON(w, http.StatusOK, map[string]any{"errors": []any{map[string]any{"message": "fakeupstream: want variables owner and name"}}})
			return
		}
		data["repository"] = map[string]any{
			"id":               "R_cork",
			"name":             name,
			"nameWithOwner":    owner + "/" + name,
			"owner":            map[string]any{"id": "U_cork", "login": owner},
			"description":      GitHubRepoDescription,
			"url":              "https://github.com/" + owner + "/" + name,
			"isPrivate":        false,
			"defaultBranchRef": map[string]any{"name": "main"},
		}
	}
	if strings.Contains(q.Query, "viewer") {
		data["viewer"] = map[string]any{"login": GitHubUserLogin}
	}
	if len(data) == 0 {
		writeJSON(w, http.StatusOK, map[string]any{"errors": []any{map[string]any{"message": "fakeupstream: unknown query"}}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data})
}
