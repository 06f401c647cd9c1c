package kubecluster

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"testing"
)

func TestNormalizeRef(t *testing.T) {
	tests := []struct{ in, want string }{
		{"cork:dev", "docker.io/library/cork:dev"},
		{"cork", "docker.io/library/cork:latest"},
		{"cork-sh/cork:dev", "docker.io/cork-sh/cork:dev"},
		{"localhost/cork-kubecluster/pause:1", "localhost/cork-kubecluster/pause:1"},
		{"registry.example:5000/a/b", "registry.example:5000/a/b:latest"},
		{"ghcr.io/a/b@sha256:00", "ghcr.io/a/b@sha256:00"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := normalizeRef(tt.in); got != tt.want {
				t.Errorf("normalizeRef(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestOCIArchive(t *testing.T) {
	archive, err := ociArchive("docker.io/library/x:1", Image{
		Files:      map[string]File{"/bin/app": {Data: []byte("#!"), Mode: 0o755}},
		Entrypoint: []string{"/bin/app"},
		User:       "65532:65532",
		WorkingDir: "/work",
	})
	if err != nil {
		t.Fatalf("ociArchive: %v", err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(archive))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read archive: %v", err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var index struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 1 || index.Manifests[0].Annotations["io.containerd.image.name"] != "docker.io/library/x:1" {
		t.Fatalf("index.json = %s, want one manifest named docker.io/library/x:1", files["index.json"])
	}
	if _, ok := files["oci-layout"]; !ok {
		t.Error("archive has no oci-layout")
	}
	var manifest struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	if err := json.Unmarshal(files["blobs/sha256/"+index.Manifests[0].Digest[len("sha256:"):]], &manifest); err != nil {
		t.Fatalf("manifest: %v", err)
	}
	layer := files["blobs/sha256/"+manifest.Layers[0].Digest[len("sha256:"):]]
	var names []string
	lr := tar.NewReader(bytes.NewReader(layer))
	for {
		h, err := lr.Next()
		if err != nil {
			break
		}
		names = append(names, h.Name)
		if h.Name == "bin/app" && h.Mode != 0o755 {
			t.Errorf("bin/app mode = %o, want 755", h.Mode)
		}
	}
	want := []string{"bin/", "work/", "bin/app"}
	if len(names) != len(want) {
		t.Fatalf("layer entries = %q, want %q", names, want)
	}
	for i := range want {
		if names[i] != want[i] {
			t.Errorf("layer entries = %q, want %q", names, want)
		}
	}
	if _, err := ociArchive("x", Image{Files: map[string]File{"rel/path": {}}}); err == nil {
		t.Error("ociArchive with a relative path = nil error, want one")
	}
}
