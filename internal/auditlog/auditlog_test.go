package auditlog

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/cork-sh/cork/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func readFixture(t *testing.T) *Summary {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "run.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s, err := Read(f)
	if err != nil {
		t.Fatalf("Read = %v", err)
	}
	return s
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", name, got, want)
	}
}

func TestReadCounts(t *testing.T) {
	s := readFixture(t)
	if s.Lines != 12 || s.Other != 2 || s.Garbage != 3 {
		t.Errorf("Read: Lines, Other, Garbage = %d, %d, %d, want 12, 2, 3", s.Lines, s.Other, s.Garbage)
	}
	if got := s.Sessions(); !slices.Equal(got, []string{"a1b2c3d4e5f6"}) {
		t.Errorf("Sessions() = %v", got)
	}
}

func TestAggregate(t *testing.T) {
	s := readFixture(t)
	rows := s.Rows()
	want := Row{Decision: "inject", Host: "api.github.com", Port: 443, Slot: "github", Count: 2, BytesUp: 250, BytesDown: 1502048}
	if len(rows) == 0 || rows[0] != want {
		t.Errorf("Rows()[0] = %+v, want %+v", rows, want)
	}
	if last := rows[len(rows)-1]; last.Decision != "deny" {
		t.Errorf("Rows() ends with %+v, want the denials last", last)
	}
	var npm Denial
	for _, d := range s.Denials() {
		if d.Host == "registry.npmjs.org" {
			npm = d
		}
	}
	if npm != (Denial{Reason: ReasonNotAllowed, Host: "registry.npmjs.org", Port: 443, Count: 2}) {
		t.Errorf("Denials() for registry.npmjs.org = %+v", npm)
	}
	reqs := s.Requests()
	if len(reqs) != 2 || reqs[0].Method != "DELETE" || reqs[0].Slot != "github" || reqs[1].Reason != ReasonPathNotAllowed {
		t.Errorf("Requests() = %+v", reqs)
	}
}

func TestTableGolden(t *testing.T) {
	var b bytes.Buffer
	if err := readFixture(t).WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "table.golden", b.Bytes())
}

// TestMissingParses: the --missing output is a valid policy holding
// exactly the hosts denied as not_allowed.
func TestMissingParses(t *testing.T) {
	var b bytes.Buffer
	if err := readFixture(t).WriteMissing(&b); err != nil {
		t.Fatal(err)
	}
	golden(t, "missing.golden", b.Bytes())
	p, err := policy.Parse(b.Bytes())
	if err != nil {
		t.Fatalf("policy.Parse(WriteMissing) = %v\n%s", err, b.String())
	}
	var got []string
	for _, a := range p.Allow {
		got = append(got, a.Host)
	}
	want := []string{"[2001:db8::7]:8443", "deb.debian.org", "git.internal.test:8443", "registry.npmjs.org"}
	if !slices.Equal(got, want) {
		t.Errorf("allow entries = %q, want %q", got, want)
	}
	for _, h := range []string{"registry.npmjs.org", "deb.debian.org", "git.internal.test"} {
		port := 443
		if h == "git.internal.test" {
			port = 8443
		}
		if !p.Lookup(h, port).Allowed {
			t.Errorf("the missing entries do not allow %s:%d", h, port)
		}
	}
	if p.Lookup("api.github.com", 443).Allowed || p.Lookup("docs.example.com", 443).Allowed {
		t.Error("the missing entries allow a host that was refused by a method or path rule")
	}
	for _, c := range []string{"#   DELETE api.github.com /repos/o/r (method_not_allowed slot github, 1 time)", "#   GET docs.example.com /v2/x (path_not_allowed, 1 time)"} {
		if !strings.Contains(b.String(), c) {
			t.Errorf("WriteMissing lacks the comment %q:\n%s", c, b.String())
		}
	}
}

func TestMissingNone(t *testing.T) {
	s, err := Read(strings.NewReader(`{"decision":"tunnel","host":"a.test","port":443,"msg":"egress"}` + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := s.WriteMissing(&b); err != nil {
		t.Fatal(err)
	}
	if _, err := policy.Parse(b.Bytes()); err != nil {
		t.Errorf("policy.Parse(WriteMissing without denials) = %v\n%s", err, b.String())
	}
}

func TestReadLongLinesAndErrors(t *testing.T) {
	long := `{"msg":"egress","decision":"tunnel","host":"` + strings.Repeat("a", MaxLineLen) + `","port":443}`
	in := long + "\n" + `{"decision":"tunnel","host":"b.test","port":443,"msg":"egress"}` + "\n" + strings.Repeat("x", 100<<10)
	s, err := Read(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if s.Lines != 1 || s.Garbage != 2 {
		t.Errorf("Read(long lines): Lines, Garbage = %d, %d, want 1, 2", s.Lines, s.Garbage)
	}
	if _, err := Read(iotest.ErrReader(os.ErrPermission)); err == nil {
		t.Error("Read(failing reader) = nil error, want one")
	}
}

func TestSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1536: "1.5KiB", 20 << 20: "20MiB", 3 << 40: "3.0TiB"} {
		if got := Size(n); got != want {
			t.Errorf("Size(%d) = %q, want %q", n, got, want)
		}
	}
}

func FuzzRead(f *testing.F) {
	seed, _ := os.ReadFile(filepath.Join("testdata", "run.log"))
	f.Add(seed)
	f.Add([]byte(`{"msg":"egress","decision":"deny","reason":"not_allowed","host":"a b","port":-1}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Read(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		if err := s.WriteMissing(&b); err != nil {
			t.Fatal(err)
		}
		if _, err := policy.Parse(b.Bytes()); err != nil {
			t.Fatalf("WriteMissing is not a policy: %v\n%s", err, b.String())
		}
		if err := s.WriteTable(&bytes.Buffer{}); err != nil {
			t.Fatal(err)
		}
	})
}
