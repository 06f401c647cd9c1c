package main

import (
	"os"
	"testing"

	"github.com/cork-sh/cork/internal/testing/testenv"
)

func TestParseKB(t *testing.T) {
	data := []byte(`Name:	cork
VmRSS:	   42812 kB
RssAnon:	    8600 kB
Threads:	7
Pss_File:           32768 kB
Private_Dirty:       8600 kB
562691136000-7fff1b0d0000 ---p 00000000 00:00 0                          [rollup]
`)
	got := parseKB(data)
	want := map[string]int64{"VmRSS": 42812, "RssAnon": 8600, "Pss_File": 32768, "Private_Dirty": 8600}
	if len(got) != len(want) {
		t.Errorf("parseKB = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("parseKB: %s = %d, want %d", k, got[k], v)
		}
	}
}

func TestReadMemSelf(t *testing.T) {
	m, err := readMem(os.Getpid())
	if err != nil {
		testenv.Missing(t, "readMem needs Linux's /proc/PID/smaps_rollup (4.14+): %v", err)
	}
	if m.rss <= 0 || m.pss <= 0 || m.anon+m.file > m.rss+4 {
		t.Errorf("readMem(self) = %+v: want VmRSS and Pss > 0, RssAnon + RssFile ≤ VmRSS", m)
	}
}

func TestMedianMem(t *testing.T) {
	got := medianMem([]memSample{{pss: 9}, {pss: 1}, {pss: 5}, {pss: 7}})
	if got.pss != 5 {
		t.Errorf("medianMem: pss %d, want 5 (the lower middle of four)", got.pss)
	}
}
