//go:build !nokube

package launch

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// The proxy pod's token stream: cork writes a blank line every
// kubeHeartbeat, and the proxy shuts down when its stdin has been silent
// for kubeStdinIdle (CORK_EXIT_ON_STDIN_IDLE). A pod's stdin with
// stdinOnce false does not end when cork dies; without the heartbeat, a
// killed cork would leave its proxy serving the real tokens.
const (
	kubeHeartbeat = 20 * time.Second
	kubeStdinIdle = 2 * time.Minute
	// kubeReattachFor bounds how long cork keeps attaching again to a
	// proxy whose stream broke (an API server restart, a load balancer's
	// idle cut) before it gives up: the proxy then stops on its own.
	kubeReattachFor = kubeStdinIdle
)

// attachProxy attaches to the proxy pod's stdin, stdout and stderr: the
// token stream goes in, the readiness line and the JSON log come out.
// When the stream breaks while the session runs, it attaches again and
// sends the last token map; teardown ends it (stopAttach).
func (s *kubeSandbox) attachProxy(spec *Spec) (*sidecar, error) {
	exec, err := s.attachExecutor()
	if err != nil {
		return nil, fmt.Errorf("kubernetes: attach to %s/%s: %w", s.objects.Namespace, kubeProxyName, err)
	}
	return s.attachProxyWith(spec, exec)
}

// attachProxyWith is attachProxy with its executor.
func (s *kubeSandbox) attachProxyWith(spec *Spec, exec remotecommand.Executor) (*sidecar, error) {
	ns := s.objects.Namespace
	stdinR, stdinW := io.Pipe()
	side := newSidecar("kubernetes proxy pod", ns+"/"+kubeProxyName, spec.Proxy.Logger, stdinW)
	stdout, stderr := side.follow()
	ctx, cancel := context.WithCancel(context.Background())
	s.stopAttach = cancel
	go func() {
		t := time.NewTicker(kubeHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				side.heartbeat()
			}
		}
	}()
	go func() {
		side.ended(s.streamProxy(ctx, spec, side, exec, stdinR, stdout, stderr))
	}()
	return side, nil
}

// streamProxy runs the attach stream, and attaches again while the
// session runs and the proxy pod does, for up to kubeReattachFor.
func (s *kubeSandbox) streamProxy(ctx context.Context, spec *Spec, side *sidecar, exec remotecommand.Executor, stdin *io.PipeReader, stdout, stderr io.Writer) error {
	var brokeAt time.Time
	for {
		err := exec.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
		if err == nil {
			err = io.EOF
		}
		stdin.CloseWithError(err) // a token write no longer blocks
		if ctx.Err() != nil || side.isClosed() || !s.proxyRunning() {
			return err
		}
		if brokeAt.IsZero() {
			brokeAt = time.Now()
		}
		if time.Since(brokeAt) > kubeReattachFor {
			spec.progress("kubernetes: gave up attaching again to the proxy pod after %v; it stops on its own", kubeReattachFor)
			return err
		}
		spec.progress("kubernetes: the attach stream to the proxy pod broke (%s); attaching again", firstLine(err.Error()))
		select {
		case <-ctx.Done():
			return err
		case <-time.After(time.Second):
		}
		var w *io.PipeWriter
		stdin, w = io.Pipe()
		go func() {
			// The last map, once the new stream reads it.
			if ok, err := side.replaceStdin(w); ok && err != nil {
				spec.progress("kubernetes: tokens not sent again to the proxy pod: %s", firstLine(err.Error()))
			}
		}()
	}
}

// proxyRunning reports whether the proxy pod still runs.
func (s *kubeSandbox) proxyRunning() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	p, err := s.client.CoreV1().Pods(s.objects.Namespace).Get(ctx, kubeProxyName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		// The API server may be what broke the stream: try again.
		return true
	}
	return p.DeletionTimestamp == nil && p.Status.Phase == corev1.PodRunning
}

// attachExecutor is the attach to the proxy container: WebSocket, or
// SPDY where the API server or a proxy in between refuses the upgrade.
func (s *kubeSandbox) attachExecutor() (remotecommand.Executor, error) {
	req := s.client.CoreV1().RESTClient().Post().Resource("pods").Namespace(s.objects.Namespace).Name(kubeProxyName).
		SubResource("attach").
		VersionedParams(&corev1.PodAttachOptions{Container: "proxy", Stdin: true, Stdout: true, Stderr: true}, scheme.ParameterCodec)
	ws, err := remotecommand.NewWebSocketExecutor(s.rest, "GET", req.URL().String())
	if err != nil {
		return nil, err
	}
	spdy, err := remotecommand.NewSPDYExecutor(s.rest, "POST", req.URL())
	if err != nil {
		return nil, err
	}
	return remotecommand.NewFallbackExecutor(ws, spdy, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	})
}
