//go:build !nokube

package launch

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// kubeClient is the part of client-go cork uses: the typed clientset (a
// fake one in tests).
type kubeClient = kubernetes.Interface

// podState says whether a pod is where cork waits for it (true), still on
// its way (false), or never going to get there (an error).
type podState func(p *corev1.Pod) (bool, error)

// waitPod polls pod name until state holds, fails, or ctx ends.
func waitPod(ctx context.Context, c kubeClient, ns, name string, state podState) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, kubePoll, true, func(ctx context.Context) (bool, error) {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return false, fmt.Errorf("deleted")
			}
			last = err
			return false, nil // the API server may be busy: keep asking
		}
		return state(p)
	})
	if err != nil && wait.Interrupted(err) {
		if last != nil {
			return fmt.Errorf("timed out: %w", last)
		}
		return errors.New("timed out")
	}
	return err
}

// podRunning: the pod's containers run.
func podRunning(p *corev1.Pod) (bool, error) {
	if err := podStuck(p); err != nil {
		return false, err
	}
	switch p.Status.Phase {
	case corev1.PodRunning:
		return true, nil
	case corev1.PodSucceeded, corev1.PodFailed:
		return false, fmt.Errorf("ended (%s)", p.Status.Phase)
	}
	return false, nil
}

// podReady: the kubelet found the pod ready.
func podReady(p *corev1.Pod) (bool, error) {
	if ok, err := podRunning(p); !ok || err != nil {
		return false, err
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue, nil
		}
	}
	return false, nil
}

// podDone: the pod has ended, whatever its status.
func podDone(p *corev1.Pod) (bool, error) {
	if err := podStuck(p); err != nil {
		return false, err
	}
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
}

// agentStarted: the agent container runs or has run. A failed init
// container is an error (agentStartError explains it).
func agentStarted(p *corev1.Pod) (bool, error) {
	if err := podStuck(p); err != nil {
		return false, err
	}
	for _, st := range p.Status.InitContainerStatuses {
		if t := st.State.Terminated; t != nil && t.ExitCode != 0 {
			return false, fmt.Errorf("init container %s exited %d", st.Name, t.ExitCode)
		}
	}
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == kubeAgentCtr && (st.State.Running != nil || st.State.Terminated != nil) {
			return true, nil
		}
	}
	if p.Status.Phase == corev1.PodFailed {
		return false, fmt.Errorf("failed before the agent started")
	}
	return false, nil
}

// agentDone: the agent container has ended.
func agentDone(p *corev1.Pod) (bool, error) {
	_, ok := exitCode(p, kubeAgentCtr)
	return ok, nil
}

// exitCode is container's exit status, once it has ended.
func exitCode(p *corev1.Pod, container string) (int, bool) {
	for _, st := range p.Status.ContainerStatuses {
		if st.Name == container && st.State.Terminated != nil {
			return int(st.State.Terminated.ExitCode), true
		}
	}
	return 0, false
}

// podStuck is an error when a container of p waits for something that
// will not come by itself: an image the node does not have (cork never
// pulls its own), a configuration the runtime refuses.
func podStuck(p *corev1.Pod) error {
	statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, st := range statuses {
		w := st.State.Waiting
		if w == nil {
			continue
		}
		switch w.Reason {
		case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName",
			"CreateContainerConfigError", "CreateContainerError", "RunContainerError":
			return fmt.Errorf("container %s: %s: %s", st.Name, w.Reason, firstLine(w.Message))
		}
	}
	// Unschedulable may pass (a node joins, pods end): it is reported
	// with the timeout, through podSummary.
	return nil
}

// podSummary is a pod's state in a few words, for an error message.
func podSummary(p *corev1.Pod) string {
	parts := []string{"phase " + string(p.Status.Phase)}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			parts = append(parts, fmt.Sprintf("%s: %s", c.Type, firstLine(c.Message)))
		}
	}
	statuses := append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
	for _, st := range statuses {
		switch {
		case st.State.Waiting != nil && st.State.Waiting.Reason != "":
			parts = append(parts, fmt.Sprintf("%s waiting: %s", st.Name, st.State.Waiting.Reason))
		case st.State.Terminated != nil:
			parts = append(parts, fmt.Sprintf("%s exited %d", st.Name, st.State.Terminated.ExitCode))
		}
	}
	return strings.Join(parts, "; ")
}

// KubeLeftover is the namespace of a kubernetes session whose cork
// process is gone.
type KubeLeftover struct {
	Namespace string
	Session   string
	Removed   bool // false with dryRun, or when the deletion failed
}

// KubeGC finds the namespaces of kubernetes sessions whose cork process
// is gone (killed, crashed, or from before a reboot) and, unless dryRun,
// deletes them. Sessions of corks still running, and of other hosts, are
// left alone. kubeconfig and context select the cluster as for
// Kubernetes.
func KubeGC(ctx context.Context, kubeconfig, context string, hostEnv map[string]string, dryRun bool) ([]KubeLeftover, error) {
	k := &Kubernetes{Kubeconfig: kubeconfig, Context: context}
	c, _, err := k.connect(hostEnv)
	if err != nil {
		return nil, err
	}
	return kubeLeftovers(ctx, c, selfOwner(), dryRun)
}

// kubeGC is KubeGC for a session's preflight: it names what it deleted.
func kubeGC(ctx context.Context, c kubeClient, self owner, dryRun bool) ([]string, error) {
	left, err := kubeLeftovers(ctx, c, self, dryRun)
	var names []string
	for _, l := range left {
		if l.Removed {
			names = append(names, l.Namespace)
		}
	}
	return names, err
}

func kubeLeftovers(ctx context.Context, c kubeClient, self owner, dryRun bool) ([]KubeLeftover, error) {
	list, err := c.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: Label + "=1"})
	if err != nil {
		return nil, kubeErr("list namespaces labelled "+Label+"=1", err)
	}
	var left []KubeLeftover
	var errs []error
	for _, ns := range list.Items {
		if ns.DeletionTimestamp != nil || !namespaceOwner(&ns).gone(self, true) {
			continue
		}
		l := KubeLeftover{Namespace: ns.Name, Session: ns.Labels[LabelSession]}
		if !dryRun {
			bg := metav1.DeletePropagationBackground
			err := c.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{PropagationPolicy: &bg})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, kubeErr("delete namespace "+ns.Name, err))
			} else {
				l.Removed = true
			}
		}
		left = append(left, l)
	}
	return left, errors.Join(errs...)
}

// namespaceOwner reads the owner annotations of a session's namespace.
func namespaceOwner(ns *corev1.Namespace) owner {
	a := ns.Annotations
	o := owner{start: a[LabelStart], boot: a[LabelBoot], host: a[LabelHost], machine: a[LabelMachine], pidns: a[LabelPIDNS]}
	fmt.Sscan(a[LabelPID], &o.pid)
	return o
}
