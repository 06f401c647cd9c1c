package learn

import (
	"bytes"
	"reflect"
	"strings"
	"testing"

	"github.com/cork-sh/cork/policy"
)

// auditLog is a run's audit log as the proxy writes it (proxy/audit.go).
const auditLog = `{"level":"info","decision":"tunnel","host":"registry.npmjs.org","port":443,"status":200,"reason":"asked","conn_id":"c1","msg":"egress"}
{"level":"info","decision":"forward","host":"files.example","port":8080,"method":"GET","path":"/a","status":200,"reason":"asked","conn_id":"c2","msg":"egress"}
{"level":"info","decision":"inject","host":"api.github.com","port":443,"method":"GET","path":"/repos/o/r/issues/1","slot":"github","status":200,"conn_id":"c3","msg":"egress"}
{"level":"info","decision":"inject","host":"api.github.com","port":443,"method":"POST","path":"/repos/o/r/pulls","slot":"github","status":201,"conn_id":"c3","msg":"egress"}
{"level":"info","decision":"inject","host":"scoped.example","port":443,"method":"GET","path":"/x","slot":"s","status":200,"conn_id":"c4","msg":"egress"}
{"level":"info","decision":"tunnel","host":"allowed.example","port":443,"status":200,"conn_id":"c5","msg":"egress"}
{"level":"warn","decision":"deny","host":"leak.example","port":80,"method":"GET","path":"/","slot":"github","status":403,"reason":"placeholder_leak","conn_id":"c6","msg":"egress"}
{"level":"info","decision":"forward","host":"leak.example","port":80,"method":"GET","path":"/ok","status":200,"reason":"asked","conn_id":"c7","msg":"egress"}
{"level":"info","decision":"deny","host":"api.github.com","port":443,"method":"DELETE","path":"/repos/o/r","slot":"github","status":403,"reason":"method_not_allowed","conn_id":"c3","msg":"egress"}
{"level":"info","decision":"tunnel","host":"registry.npmjs.org","port":443,"status":0,"conn_id":"c1","msg":"tunnel_closed"}
not json
{"level":"info","decision":"forward","host":"open.example","port":80,"method":"POST","path":"/v1/x","status":200,"reason":"asked","conn_id":"c8","msg":"egress"}
`

func TestRecorder(t *testing.T) {
	r := &Recorder{Scoped: func(host string, port int) bool { return host == "scoped.example" }}
	r.Note("open.example", 80, "", false)
	r.Note("registry.npmjs.org", 443, "", true)
	// Written in odd pieces, as a writer may split them.
	for data := []byte(auditLog); len(data) > 0; {
		n := min(len(data), 37)
		if _, err := r.Write(data[:n]); err != nil {
			t.Fatalf("Write: %v", err)
		}
		data = data[n:]
	}
	res := r.Result()
	want := []policy.Allow{
		{Host: "files.example:8080"},
		{Host: "registry.npmjs.org"},
		{Host: "api.github.com", Path: "/repos/o/r", Methods: []string{"GET", "POST"}},
		{Host: "open.example", Path: "/v1/x", Methods: []string{"POST"}},
	}
	if !reflect.DeepEqual(res.Allow, want) {
		t.Errorf("Result().Allow = %v, want %v", res.Allow, want)
	}
	if res.Requests != 8 {
		t.Errorf("Result().Requests = %d, want 8", res.Requests)
	}
	if len(res.Refused) != 2 {
		t.Fatalf("Result().Refused = %v, want 2 kinds", res.Refused)
	}
	var b bytes.Buffer
	res.Summary(&b, "out.yaml")
	for _, s := range []string{"learned 4 allow entries for 4 hosts from 8 requests; wrote out.yaml",
		"refused GET leak.example/ (credential github): placeholder_leak",
		"refused DELETE api.github.com/repos/o/r (credential github): method_not_allowed"} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("Summary() = %q, want it to contain %q", b.String(), s)
		}
	}
}

func TestRecorderZero(t *testing.T) {
	var r Recorder
	if res := r.Result(); res.Allow != nil || res.Requests != 0 || res.Refused != nil {
		t.Errorf("zero Recorder: Result() = %+v, want empty", res)
	}
}
