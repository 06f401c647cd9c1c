package launch

import (
	"github.com/cork-sh/cork/provision"
	"github.com/cork-sh/cork/resolve"
)

// Tokens resolves every slot of plan.Egress.TokenEnvMap against hostEnv
// overlaid by plan.ProvisionedEnv (a provisioned value wins). A missing or
// empty variable is a *resolve.MissingError listing every missing variable
// with its slot. hostEnv and plan are not modified.
func Tokens(plan provision.Plan, hostEnv map[string]string) (resolve.Tokens, error) {
	return resolve.Values(plan.Egress.TokenEnvMap, resolve.Merge(hostEnv, plan.ProvisionedEnv))
}
