// Package fakeupstream serves fake ChatGPT (chatgpt.com), OpenAI auth
// (auth.openai.com), Anthropic (api.anthropic.com), GitHub git
// (github.com, through the real git http-backend), the GitHub API
// (api.github.com, what gh and the Copilot CLI need; a GitHub Enterprise
// Server with both on ghe.cork.test), the Copilot API
// (api.individual.githubcopilot.com) and Google's Gemini API, Code Assist
// and token check (generativelanguage.googleapis.com,
// cloudcode-pa.googleapis.com, oauth2.googleapis.com) backends over HTTPS,
// for running the real Codex CLI, Claude Code, Gemini CLI, Copilot CLI, gh
// and other clients through cork in tests (the compat suite). Nothing here
// talks to the network: one TLS
// listener on 127.0.0.1 (or Config.Listen: the node's address when the
// proxy runs in a pod) presents a certificate from a throwaway CA for
// every fake host, and the proxy is pointed at it with Resolve.
//
// The fakes answer only what the pinned CLIs need for one non-interactive
// turn (see docs/AGENTS.md, "Observed behaviour"), each with a canned reply,
// and they accept a request only when it carries the REAL credential: a
// placeholder that slipped through the proxy gets a 401. Every request is
// recorded with all of its headers, so tests can check which token arrived.
//
// A Server is safe for concurrent use.
package fakeupstream
