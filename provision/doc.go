// Package provision builds a Plan: what a sandbox is given (dummy files and
// environment), what was read on the host (the provisioned environment),
// and what the egress proxy must do: slots, routes, allow and block lists,
// built directly as values of package policy.
//
// Each agent is a Profile that keeps all of its steps together, in one file:
// read the host credential, mint the dummy files, add the routes. Profiles
// are registered explicitly in Profiles; Build runs the selected ones and
// merges their contributions, refusing conflicts.
//
// Invariants:
//   - Plan.Files and Plan.Env hold only dummy values: placeholders shaped
//     like the real credentials (same prefix and length, a JWT for a JWT)
//     and random per Build, plus non-secret facts such as an email address.
//   - A real credential read on the host goes only into Plan.ProvisionedEnv,
//     keyed by the variable that Egress.TokenEnvMap names for its slot;
//     launch.Tokens resolves it from there. Plan never prints it.
//   - Errors name the file and the field, never a value.
//   - A Plan from Build holds a valid policy: Build compiles it with
//     policy.New, the proxy's own validation, so a bad route fails at
//     Build and never later at launch.
//   - With Options.ForwardHostCredentials off, nothing is read from the
//     host's files and no host command runs (Options.Command, such as
//     `gh auth token`): the operator supplies tokens through the host
//     environment variables named in Egress.TokenEnvMap.
package provision
