//go:build !nokube

package launch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// kubePoll is how often cork looks at a pod it waits for.
const kubePoll = 250 * time.Millisecond

// kubeLogDrain bounds how long the agent's log stream may run on after
// its container ended.
const kubeLogDrain = 10 * time.Second

// makeHome stages the sandbox home on the host; run copies it into the
// home ConfigMap once the session CA is in it.
func (s *kubeSandbox) makeHome(ss *session) (string, error) {
	var err error
	if s.dir, err = os.MkdirTemp("", "cork-kube-"+s.id+"-"); err != nil {
		return "", fmt.Errorf("session directory: %w", err)
	}
	home := filepath.Join(s.dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		return "", fmt.Errorf("sandbox home: %w", err)
	}
	return home, nil
}

// startProxy creates the session's namespace and everything but the
// agent, hands the proxy its tokens through an attach stream, and proves
// the boundary with the probe pod.
func (s *kubeSandbox) startProxy(ctx context.Context, ss *session) (*sessionProxy, error) {
	o, spec := s.objects, ss.spec
	cctx, cancel := context.WithTimeout(ctx, KubePodStartTimeout)
	defer cancel()
	if _, err := s.client.CoreV1().Namespaces().Create(cctx, o.namespace(), metav1.CreateOptions{}); err != nil {
		return nil, kubeErr("create namespace "+o.Namespace, err)
	}
	s.ns = true
	spec.progress("kubernetes: namespace %s created (labelled %s=%s)", o.Namespace, LabelSession, s.id)
	auth := sessionAuth()
	if err := s.createSession(cctx, auth); err != nil {
		return nil, err
	}
	spec.progress("kubernetes: proxy pod, service, network policies and canary created; waiting for the proxy")
	if err := waitPod(cctx, s.client, o.Namespace, kubeProxyName, podRunning); err != nil {
		return nil, s.podError(kubeProxyName, err)
	}
	side, err := s.attachProxy(spec)
	if err != nil {
		return nil, err
	}
	s.side = side
	if err := side.sendTokens(ss.tokens); err != nil {
		return nil, fmt.Errorf("kubernetes proxy pod: %w", err)
	}
	timeout := s.cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultSidecarReadyTimeout
	}
	if err := side.waitReady(ctx, timeout); err != nil {
		return nil, err
	}
	ca := []byte(side.readyLine.CA)
	if len(ca) == 0 {
		return nil, fmt.Errorf("kubernetes proxy pod: its readiness line has no CA certificate: is %s a cork built from this repository?", o.SidecarImage)
	}
	// The Service sends only to a pod the kubelet found ready (/readyz).
	if err := waitPod(cctx, s.client, o.Namespace, kubeProxyName, podReady); err != nil {
		return nil, s.podError(kubeProxyName, err)
	}
	svc, err := s.client.CoreV1().Services(o.Namespace).Get(cctx, kubeProxyName, metav1.GetOptions{})
	if err != nil {
		return nil, kubeErr("get service "+kubeProxyName, err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil, fmt.Errorf("kubernetes: service %s/%s has no cluster IP", o.Namespace, kubeProxyName)
	}
	s.proxyAddr = hostPort(svc.Spec.ClusterIP, ProxyPort)
	if err := s.proveBoundary(ctx, spec); err != nil {
		return nil, err
	}
	spec.progress("kubernetes: proxy %s/%s ready; the sandbox reaches it at http://%s", o.Namespace, kubeProxyName, s.proxyAddr)
	return &sessionProxy{url: proxyURL(auth, s.proxyAddr), sink: side, caPEM: ca}, nil
}

// createSession creates the objects the proxy and the probe need.
func (s *kubeSandbox) createSession(ctx context.Context, auth string) error {
	o, ns := s.objects, s.objects.Namespace
	core := s.client.CoreV1()
	if _, err := core.ConfigMaps(ns).Create(ctx, o.proxyConfig(), metav1.CreateOptions{}); err != nil {
		return kubeErr("create configmap "+kubeProxyName, err)
	}
	for _, np := range o.networkPolicies() {
		if _, err := s.client.NetworkingV1().NetworkPolicies(ns).Create(ctx, np, metav1.CreateOptions{}); err != nil {
			return kubeErr("create networkpolicy "+np.Name, err)
		}
	}
	if _, err := core.Services(ns).Create(ctx, o.service(), metav1.CreateOptions{}); err != nil {
		return kubeErr("create service "+kubeProxyName, err)
	}
	if _, err := core.Pods(ns).Create(ctx, o.proxyPod(auth), metav1.CreateOptions{}); err != nil {
		return kubeErr("create pod "+kubeProxyName, err)
	}
	if _, err := core.Pods(ns).Create(ctx, o.canaryPod(), metav1.CreateOptions{}); err != nil {
		return kubeErr("create pod "+kubeCanaryName, err)
	}
	return nil
}

// proveBoundary runs the probe pod in the agent's place: it must reach
// the proxy and must not reach the API server or the canary. A cluster
// that does not enforce the session's NetworkPolicy is refused.
func (s *kubeSandbox) proveBoundary(ctx context.Context, spec *Spec) error {
	o := s.objects
	cctx, cancel := context.WithTimeout(ctx, KubePodStartTimeout+KubeBoundaryTimeout)
	defer cancel()
	if err := waitPod(cctx, s.client, o.Namespace, kubeCanaryName, podReady); err != nil {
		return s.podError(kubeCanaryName, err)
	}
	canary, err := s.client.CoreV1().Pods(o.Namespace).Get(cctx, kubeCanaryName, metav1.GetOptions{})
	if err != nil {
		return kubeErr("get pod "+kubeCanaryName, err)
	}
	s.deny = append([]string(nil), s.apiAddrs...)
	for _, ip := range canary.Status.PodIPs {
		s.deny = append(s.deny, hostPort(ip.IP, kubeCanaryPort))
	}
	if len(canary.Status.PodIPs) == 0 && canary.Status.PodIP != "" {
		s.deny = append(s.deny, hostPort(canary.Status.PodIP, kubeCanaryPort))
	}
	probe := o.probePod(s.proxyAddr, s.deny)
	if _, err := s.client.CoreV1().Pods(o.Namespace).Create(cctx, probe, metav1.CreateOptions{}); err != nil {
		return kubeErr("create pod "+kubeProbeName, err)
	}
	spec.progress("kubernetes: probing the boundary from a pod under the sandbox's network policy")
	if err := waitPod(cctx, s.client, o.Namespace, kubeProbeName, podDone); err != nil {
		return s.podError(kubeProbeName, err)
	}
	p, err := s.client.CoreV1().Pods(o.Namespace).Get(cctx, kubeProbeName, metav1.GetOptions{})
	if err != nil {
		return kubeErr("get pod "+kubeProbeName, err)
	}
	code, ran := exitCode(p, "probe")
	if !ran {
		// The kubelet refused the pod (no resources, admission): the
		// boundary is unproven.
		return setupErrorf("kubernetes: the probe pod %s/%s did not run (%s %s); the boundary is unproven and the agent was not started", o.Namespace, kubeProbeName, p.Status.Reason, podSummary(p))
	}
	logs := s.lastLog(kubeProbeName, "probe")
	switch {
	case code == 0 && p.Status.Phase == corev1.PodSucceeded:
		spec.progress("kubernetes: boundary holds: the probe reached the proxy and nothing else (%d addresses, the API server's Service and the resolvers tried)", len(s.deny))
		return nil
	case code == probeEscaped:
		return setupErrorf("kubernetes: the cluster does not enforce NetworkPolicy: %s; cork refuses to run an agent there (docs/KUBERNETES.md, \"NetworkPolicy must be enforced\")", logs)
	case code == 1:
		return setupErrorf("kubernetes: the probe pod could not reach the proxy at %s, or could not test an address: %s", s.proxyAddr, logs)
	default:
		return setupErrorf("kubernetes: the probe pod failed (exit %d, phase %s): %s; is %s a cork built from this repository?", code, p.Status.Phase, logs, o.SidecarImage)
	}
}

// probeEscaped is `cork probe`'s exit status when a --deny address
// answered.
const probeEscaped = 3

// run creates the home ConfigMap and the agent pod, streams the agent's
// output and returns its exit status.
func (s *kubeSandbox) run(ctx context.Context, ss *session, env map[string]string) (int, error) {
	spec, o := ss.spec, s.objects
	files, err := readHome(ss.home)
	if err != nil {
		return 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, KubeAgentStartTimeout)
	defer cancel()
	pods := s.client.CoreV1().Pods(o.Namespace)
	if _, err := s.client.CoreV1().ConfigMaps(o.Namespace).Create(cctx, o.homeConfig(files), metav1.CreateOptions{}); err != nil {
		return 0, kubeErr("create configmap "+kubeHomeName, err)
	}
	if _, err := pods.Create(cctx, o.agentPod(env, files, s.proxyAddr, s.deny), metav1.CreateOptions{}); err != nil {
		return 0, kubeErr("create pod "+kubeAgentName, err)
	}
	spec.progress("kubernetes: agent pod %s/%s created; waiting for it to start", o.Namespace, kubeAgentName)
	if err := waitPod(cctx, s.client, o.Namespace, kubeAgentName, agentStarted); err != nil {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		return 0, s.agentStartError(err)
	}
	spec.progress("sandbox ready; running %s", path.Base(spec.Command[0]))
	// Not the run's context: what the agent writes as it stops
	// (interrupted) is its output too. The stream ends with the
	// container.
	lctx, lcancel := context.WithCancel(context.Background())
	defer lcancel()
	logsDone := make(chan error, 1)
	go func() { logsDone <- s.streamLogs(lctx, spec.Stdout) }()
	code, err := s.waitAgent(ctx, spec)
	var logErr error
	select {
	case logErr = <-logsDone:
	case <-time.After(kubeLogDrain):
		lcancel()
		<-logsDone
	}
	if logErr != nil {
		spec.progress("kubernetes: the agent's output may be incomplete: its log stream broke (%s)", firstLine(logErr.Error()))
	}
	if err != nil {
		return code, err
	}
	if s.side.exited() {
		spec.progress("kubernetes: the proxy pod's stream ended while the agent ran: %s", firstLine(s.side.lastLines()))
	}
	spec.progress("sandbox exited with status %d; tearing down", code)
	return code, nil
}

// waitAgent waits for the agent container to end. When ctx ends first,
// the pod is deleted with ChildStopGrace: SIGTERM, then SIGKILL.
func (s *kubeSandbox) waitAgent(ctx context.Context, spec *Spec) (int, error) {
	ns := s.objects.Namespace
	err := waitPod(ctx, s.client, ns, kubeAgentName, agentDone)
	if err == nil {
		p, err := s.client.CoreV1().Pods(ns).Get(context.Background(), kubeAgentName, metav1.GetOptions{})
		if err != nil {
			return 0, kubeErr("get pod "+kubeAgentName, err)
		}
		if code, ok := exitCode(p, kubeAgentCtr); ok {
			return code, nil
		}
		return 0, fmt.Errorf("kubernetes: agent pod %s/%s ended without an exit status (%s)", ns, kubeAgentName, p.Status.Phase)
	}
	if ctx.Err() == nil {
		return 0, s.podError(kubeAgentName, err)
	}
	spec.progress("interrupted; stopping the agent pod")
	kctx, cancel := context.WithTimeout(context.Background(), ChildStopGrace+20*time.Second)
	defer cancel()
	grace := int64(ChildStopGrace.Seconds())
	s.client.CoreV1().Pods(ns).Delete(kctx, kubeAgentName, metav1.DeleteOptions{GracePeriodSeconds: &grace})
	code := 143 // 128+SIGTERM, when the pod is gone before its status is seen
	wait.PollUntilContextCancel(kctx, kubePoll, true, func(ctx context.Context) (bool, error) {
		p, err := s.client.CoreV1().Pods(ns).Get(ctx, kubeAgentName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		if err == nil {
			if c, ok := exitCode(p, kubeAgentCtr); ok {
				code = c
				return true, nil
			}
		}
		return false, nil
	})
	return code, nil
}

// streamLogs copies the agent container's output (stdout and stderr, as
// the kubelet keeps them: interleaved) to w until it ends.
func (s *kubeSandbox) streamLogs(ctx context.Context, w io.Writer) error {
	if w == nil {
		w = io.Discard
	}
	req := s.client.CoreV1().Pods(s.objects.Namespace).GetLogs(kubeAgentName, &corev1.PodLogOptions{Container: kubeAgentCtr, Follow: true})
	rc, err := req.Stream(ctx)
	if err != nil {
		return err
	}
	defer rc.Close()
	_, err = io.Copy(w, rc)
	return err
}

// agentStartError explains an agent pod that did not start: an init
// container that failed (the home copy, or the boundary seen from the
// agent's own network), or the pod's own reason.
func (s *kubeSandbox) agentStartError(err error) error {
	ns := s.objects.Namespace
	p, gerr := s.client.CoreV1().Pods(ns).Get(context.Background(), kubeAgentName, metav1.GetOptions{})
	if gerr == nil {
		for _, st := range p.Status.InitContainerStatuses {
			if t := st.State.Terminated; t != nil && t.ExitCode != 0 {
				logs := s.lastLog(kubeAgentName, st.Name)
				if st.Name == "boundary" && t.ExitCode == probeEscaped {
					return setupErrorf("kubernetes: the agent pod's network is not confined: %s; the agent was not started", logs)
				}
				return setupErrorf("kubernetes: agent pod %s/%s: init container %s exited %d: %s; the agent was not started", ns, kubeAgentName, st.Name, t.ExitCode, logs)
			}
		}
	}
	return s.podError(kubeAgentName, err)
}

// teardown deletes the session's namespace, and everything in it, and
// waits until it is gone.
func (s *kubeSandbox) teardown(ss *session) error {
	if s.side != nil {
		s.side.closeStdin()
	}
	if s.stopAttach != nil {
		// After the namespace is gone: the proxy's last log lines still
		// come through the stream until then.
		defer s.stopAttach()
	}
	var errs []error
	if s.ns {
		if err := deleteNamespace(s.client, s.objects.Namespace, ss.spec.progress); err != nil {
			errs = append(errs, err)
		} else {
			ss.spec.progress("kubernetes: namespace %s deleted", s.objects.Namespace)
		}
	}
	if s.dir != "" {
		if err := os.RemoveAll(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("session directory: %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("kubernetes teardown of session %s (`cork gc --backend kubernetes` removes leftovers): %w", s.id, errors.Join(errs...))
	}
	return nil
}

// deleteNamespace deletes ns and waits until it is gone; progress hears
// of what did not go as planned on the way.
func deleteNamespace(c kubeClient, ns string, progress func(string, ...any)) error {
	ctx, cancel := context.WithTimeout(context.Background(), KubeTeardownTimeout)
	defer cancel()
	bg := metav1.DeletePropagationBackground
	zero := int64(0)
	// The pods first, at once: the namespace controller would give each
	// its grace period.
	if err := c.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{GracePeriodSeconds: &zero}, metav1.ListOptions{}); err != nil {
		progress("kubernetes: could not stop the pods of %s at once (%s); deleting the namespace stops them", ns, firstLine(err.Error()))
	}
	err := c.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return kubeErr("delete namespace "+ns, err)
	}
	err = wait.PollUntilContextCancel(ctx, 2*kubePoll, true, func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("namespace %s: still there after %v", ns, KubeTeardownTimeout)
	}
	return nil
}

// readHome reads the staged sandbox home: every regular file, with its
// path relative to the home and its mode.
func readHome(home string) ([]homeFile, error) {
	var files []homeFile
	total := 0
	err := filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(home, p)
		total += len(data)
		files = append(files, homeFile{Path: filepath.ToSlash(rel), Mode: int32(info.Mode().Perm()), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("sandbox home: %w", err)
	}
	// A ConfigMap holds at most 1 MiB, names and all.
	if total > 900<<10 {
		return nil, fmt.Errorf("sandbox home: %d bytes of files: more than a ConfigMap holds (900 KiB here)", total)
	}
	return files, nil
}

// lastLog is the last line of a container's log, for an error message.
func (s *kubeSandbox) lastLog(pod, container string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tail := int64(5)
	b, err := s.client.CoreV1().Pods(s.objects.Namespace).GetLogs(pod, &corev1.PodLogOptions{Container: container, TailLines: &tail}).DoRaw(ctx)
	if err != nil {
		return "(no log: " + firstLine(err.Error()) + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// podError explains a pod that did not get where cork waited for it.
func (s *kubeSandbox) podError(name string, err error) error {
	ns := s.objects.Namespace
	p, gerr := s.client.CoreV1().Pods(ns).Get(context.Background(), name, metav1.GetOptions{})
	if gerr != nil {
		return fmt.Errorf("kubernetes: pod %s/%s: %w", ns, name, err)
	}
	return fmt.Errorf("kubernetes: pod %s/%s: %w (%s)", ns, name, err, podSummary(p))
}

func kubeErr(what string, err error) error {
	return fmt.Errorf("kubernetes: %s: %w", what, err)
}
