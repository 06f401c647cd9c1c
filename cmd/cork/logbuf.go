package main

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// Log buffering: the audit log is one line per request, and one write
// syscall per line is a measurable share of the proxy's per-request cost
// (docs/PERFORMANCE.md). Lines are buffered and written at least every
// logFlushInterval, when the buffer fills, and on Close.
const (
	logFlushInterval = 50 * time.Millisecond
	logBufferSize    = 64 << 10
)

// bufferedLog is an io.Writer safe for concurrent use that batches writes
// to w. Each Write is kept whole (a log line is never split between two
// flushes unless it alone exceeds the buffer).
type bufferedLog struct {
	mu   sync.Mutex
	bw   *bufio.Writer
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newBufferedLog(w io.Writer) *bufferedLog {
	l := &bufferedLog{bw: bufio.NewWriterSize(w, logBufferSize), stop: make(chan struct{}), done: make(chan struct{})}
	go l.flusher()
	return l
}

func (l *bufferedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bw.Available() < len(p) {
		if err := l.bw.Flush(); err != nil {
			return 0, err
		}
	}
	return l.bw.Write(p)
}

func (l *bufferedLog) flusher() {
	defer close(l.done)
	t := time.NewTicker(logFlushInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
			l.Flush()
		}
	}
}

// Flush writes what is buffered.
func (l *bufferedLog) Flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bw.Flush()
}

// Close stops the periodic flush and writes what is left. Call it last:
// a line written after Close waits for a full buffer or another Flush.
func (l *bufferedLog) Close() error {
	l.once.Do(func() { close(l.stop); <-l.done })
	return l.Flush()
}
