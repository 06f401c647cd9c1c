package kubecluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// StartNetworkPolicy starts kube-router with only its firewall (no routing,
// no service proxy, no CNI) and returns once it enforces NetworkPolicy:
// its first full sync is done and FORWARD jumps to its chain. The bridge
// CNI alone accepts policies but enforces none. Calling it while
// kube-router runs is a no-op.
func (c *Cluster) StartNetworkPolicy(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return errors.New("start network policy: cluster closed")
	}
	if c.router != nil && !c.router.exited() {
		return nil
	}
	// A fresh log: readiness is read from it.
	_ = os.Remove(filepath.Join(c.dir, "logs", "kube-router.log"))
	p, err := c.spawn("kube-router", filepath.Join(c.bin, "kube-router"),
		"--kubeconfig="+c.kubeconfigPath("kube-router"),
		"--hostname-override="+NodeName,
		"--run-firewall=true",
		"--run-router=false",
		"--run-service-proxy=false",
		"--enable-cni=false",
		"--enable-ipv4=true",
		"--enable-ipv6=false",
		"--service-cluster-ip-range="+serviceCIDR,
		"--health-port="+strconv.Itoa(routerHealthPort),
		"--metrics-port=0",
		"--iptables-sync-period=1m",
		"--v=1",
	)
	if err != nil {
		return err
	}
	c.router = p
	err = c.waitFor(ctx, "kube-router", 60*time.Second, func(ctx context.Context) error {
		b, err := os.ReadFile(p.log)
		if err != nil {
			return err
		}
		if !bytes.Contains(b, []byte("sync iptables took")) {
			return errors.New("no full sync yet")
		}
		out, err := run(ctx, "iptables", "-w", "-S", "FORWARD")
		if err != nil {
			return err
		}
		if !bytes.Contains(out, []byte("-j KUBE-ROUTER-FORWARD")) {
			return errors.New("FORWARD does not jump to KUBE-ROUTER-FORWARD yet")
		}
		return nil
	}, p)
	if err != nil {
		p.stop(5 * time.Second)
		c.router = nil
		_ = cleanRouter(context.WithoutCancel(ctx))
		return fmt.Errorf("start network policy: %w", err)
	}
	return nil
}

// StopNetworkPolicy stops kube-router and removes its chains, the rules
// that jump to them and its ipsets, so that NetworkPolicy is no longer
// enforced; kube-proxy's rules stay. Calling it when kube-router is not
// running still removes leftovers.
func (c *Cluster) StopNetworkPolicy(ctx context.Context) error {
	c.mu.Lock()
	p := c.router
	c.router = nil
	c.mu.Unlock()
	if p != nil {
		p.stop(5 * time.Second)
	}
	if err := cleanRouter(ctx); err != nil {
		return fmt.Errorf("stop network policy: %w", err)
	}
	c.logf("network policy enforcement off")
	return nil
}

func cleanRouter(ctx context.Context) error {
	var errs []error
	for _, ipt := range []string{"iptables", "ip6tables"} {
		errs = append(errs, cleanIPTables(ctx, ipt, routerChainPrefixes, ""))
	}
	errs = append(errs, destroyIPSets(ctx, routerIPSetPrefixes))
	return errors.Join(errs...)
}
