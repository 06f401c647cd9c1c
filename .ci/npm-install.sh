#!/usr/bin/env bash
# Installs the agent CLIs that the compatibility suite (compat/) runs, at
# pinned versions, from the npm registry only, into a fixed prefix:
#
#   $CORK_CLIENTS_PREFIX (default /opt/cork-clients)/node_modules/.bin/{codex,claude,gemini,copilot}
#   $CORK_CLIENTS_PREFIX/node_modules/undici   (EnvHttpProxyAgent for Node 20's fetch)
#
# Idempotent: when every pinned version is already installed it does not
# touch the network. Prints the versions it ends with. The compat tests find
# the CLIs there (or via CORK_CLIENTS_PREFIX, or on PATH).
#
# Bump a pin here, run `go test ./compat -update` and commit the regenerated
# docs/COMPATIBILITY.md with it.
set -euo pipefail

CODEX_VERSION=0.171.0
CLAUDE_VERSION=2.1.332
GEMINI_VERSION=0.61.0
COPILOT_VERSION=1.0.102
UNDICI_VERSION=7.30.2 # 7.x is the last line supporting Node 20 (>=20.18.1)

prefix="${CORK_CLIENTS_PREFIX:-/opt/cork-clients}"

installed() { # name version
	local pj="$prefix/node_modules/$1/package.json"
	[ -f "$pj" ] && [ "$(node -p "require('$pj').version" 2>/dev/null)" = "$2" ]
}

command -v node >/dev/null || { echo "npm-install.sh: node not found" >&2; exit 1; }
command -v npm >/dev/null || { echo "npm-install.sh: npm not found" >&2; exit 1; }

if installed @openai/codex "$CODEX_VERSION" &&
	installed @anthropic-ai/claude-code "$CLAUDE_VERSION" &&
	installed @google/gemini-cli "$GEMINI_VERSION" &&
	installed @github/copilot "$COPILOT_VERSION" &&
	installed undici "$UNDICI_VERSION" &&
	[ -x "$prefix/node_modules/.bin/codex" ] && [ -x "$prefix/node_modules/.bin/claude" ] &&
	[ -x "$prefix/node_modules/.bin/gemini" ] && [ -x "$prefix/node_modules/.bin/copilot" ]; then
	echo "npm-install.sh: pinned clients already in $prefix"
else
	mkdir -p "$prefix"
	cat >"$prefix/package.json" <<JSON
{
  "name": "cork-compat-clients",
  "private": true,
  "description": "Pinned agent CLIs for cork's compatibility suite; written by .ci/npm-install.sh",
  "dependencies": {
    "@openai/codex": "$CODEX_VERSION",
    "@anthropic-ai/claude-code": "$CLAUDE_VERSION",
    "@google/gemini-cli": "$GEMINI_VERSION",
    "@github/copilot": "$COPILOT_VERSION",
    "undici": "$UNDICI_VERSION"
  }
}
JSON
	# --include=optional: the CLIs ship their native binary as an optional
	# dependency (@openai/codex-linux-x64, @anthropic-ai/claude-code-linux-x64,
	# @github/copilot-linux-x64).
	npm install --prefix "$prefix" --no-audit --no-fund --include=optional --loglevel=error
fi

bin="$prefix/node_modules/.bin"
printf 'codex   %s\n' "$("$bin/codex" --version)"
printf 'claude  %s\n' "$("$bin/claude" --version)"
printf 'gemini  %s\n' "$("$bin/gemini" --version)"
printf 'copilot %s\n' "$("$bin/copilot" --version | sed -n 1p)"
printf 'undici  %s\n' "$(node -p "require('$prefix/node_modules/undici/package.json').version")"
printf 'node    %s\n' "$(node --version)"
