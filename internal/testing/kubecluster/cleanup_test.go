package kubecluster

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLockMachineSerializes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	first, err := lockMachine(t.Context(), path)
	if err != nil {
		t.Fatalf("lockMachine: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockMachine(ctx, path); err == nil {
		t.Fatal("second lockMachine while held = nil error, want a timeout")
	}
	got := make(chan error, 1)
	go func() {
		f, err := lockMachine(t.Context(), path)
		if err == nil {
			f.Close()
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond)
	first.Close()
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("lockMachine after release: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("lockMachine did not get the lock after release")
	}
}

func TestJumpsTo(t *testing.T) {
	owned := func(c string) bool { return strings.HasPrefix(c, "KUBE-") }
	tests := []struct {
		line string
		want bool
	}{
		{`-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD`, true},
		{`-A POSTROUTING -s 10.244.0.3/32 -g KUBE-X`, true},
		{`-A FORWARD -j DOCKER-USER`, false},
		{`-A FORWARD -i cni0 -j ACCEPT`, false},
	}
	for _, tt := range tests {
		if got := jumpsTo(strings.Fields(tt.line), owned); got != tt.want {
			t.Errorf("jumpsTo(%q) = %v, want %v", tt.line, got, tt.want)
		}
	}
}
