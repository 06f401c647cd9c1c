package kubecluster

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Image is a FROM-scratch image built in Go: one layer holding Files, and
// the run configuration. The zero value is an empty image with no command.
type Image struct {
	// Files maps an absolute path in the image to its content; parent
	// directories are created 0755, owned by root.
	Files map[string]File
	// Entrypoint and Cmd are the image's ENTRYPOINT and CMD.
	Entrypoint []string
	Cmd        []string
	// Env holds "KEY=value" pairs.
	Env []string
	// User is "uid:gid" (e.g. "65532:65532"); empty means root.
	User string
	// WorkingDir is created in the image if set.
	WorkingDir string
}

// File is one file of an Image: the host file Source, or Data if Source is
// empty. Mode's permission bits are used; zero means Source's mode, or
// 0644 for Data.
type File struct {
	Source string
	Data   []byte
	Mode   fs.FileMode
}

// criNamespace is the containerd namespace the CRI plugin uses.
const criNamespace = "k8s.io"

// ImportImage builds img as an OCI image archive, imports it into the
// cluster's containerd under ref (e.g. "cork:dev") with ctr, and unpacks
// it, so that pods with imagePullPolicy Never or IfNotPresent run it. It
// is safe for concurrent use.
func (c *Cluster) ImportImage(ctx context.Context, ref string, img Image) error {
	archive, err := ociArchive(normalizeRef(ref), img)
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	dir := filepath.Join(c.dir, "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	f, err := os.CreateTemp(dir, "image-*.tar")
	if err != nil {
		return fmt.Errorf("create image archive: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(archive); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if _, err := run(ctx, "ctr", "--address", c.containerdSocket(), "--namespace", criNamespace,
		"images", "import", f.Name()); err != nil {
		return fmt.Errorf("import image %s: %w", ref, err)
	}
	return nil
}

// normalizeRef returns ref as the CRI plugin names images: "cork:dev" is
// "docker.io/library/cork:dev", a missing tag is "latest". Imported under
// the short name, the kubelet would not find it.
func normalizeRef(ref string) string {
	name, rest := ref, ""
	if i := strings.IndexByte(ref, '@'); i >= 0 {
		name, rest = ref[:i], ref[i:]
	}
	first, _, hasSlash := strings.Cut(name, "/")
	if !hasSlash || (!strings.ContainsAny(first, ".:") && first != "localhost") {
		if !hasSlash {
			name = "library/" + name
		}
		name = "docker.io/" + name
	}
	if rest == "" && !strings.Contains(name[strings.LastIndexByte(name, '/')+1:], ":") {
		name += ":latest"
	}
	return name + rest
}

// ociArchive returns an OCI image layout as a tar: oci-layout, index.json
// naming ref (containerd's io.containerd.image.name annotation, which ctr
// import uses as the image's name) and the blobs.
func ociArchive(ref string, img Image) ([]byte, error) {
	layer, err := layerTar(img)
	if err != nil {
		return nil, err
	}
	layerDigest := digest(layer)
	type runConfig struct {
		User       string   `json:"User,omitempty"`
		Env        []string `json:"Env,omitempty"`
		Entrypoint []string `json:"Entrypoint,omitempty"`
		Cmd        []string `json:"Cmd,omitempty"`
		WorkingDir string   `json:"WorkingDir,omitempty"`
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"created":      time.Unix(0, 0).UTC().Format(time.RFC3339),
		"config": runConfig{
			User: img.User, Env: img.Env, Entrypoint: img.Entrypoint, Cmd: img.Cmd, WorkingDir: img.WorkingDir,
		},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{layerDigest}},
	})
	if err != nil {
		return nil, err
	}
	manifest, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.manifest.v1+json",
		"config":        descriptor("application/vnd.oci.image.config.v1+json", config),
		"layers":        []any{descriptor("application/vnd.oci.image.layer.v1.tar", layer)},
	})
	if err != nil {
		return nil, err
	}
	md := descriptor("application/vnd.oci.image.manifest.v1+json", manifest)
	md["annotations"] = map[string]string{
		"io.containerd.image.name":          ref,
		"org.opencontainers.image.ref.name": ref,
	}
	md["platform"] = map[string]string{"architecture": runtime.GOARCH, "os": "linux"}
	index, err := json.Marshal(map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests":     []any{md},
	})
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	entries := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(config), config},
		{blobPath(manifest), manifest},
		{blobPath(layer), layer},
	}
	for _, e := range entries {
		if err := tw.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), ModTime: time.Unix(0, 0), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(b []byte) string {
	return "blobs/sha256/" + strings.TrimPrefix(digest(b), "sha256:")
}

func descriptor(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": digest(b), "size": len(b)}
}

// layerTar is img's single uncompressed layer, entries in path order.
func layerTar(img Image) ([]byte, error) {
	dirs := map[string]bool{}
	addParents := func(p string) {
		for d := path.Dir(p); d != "/" && d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	paths := make([]string, 0, len(img.Files))
	for p := range img.Files {
		if !path.IsAbs(p) || path.Clean(p) != p {
			return nil, fmt.Errorf("image file %q: want a clean absolute path", p)
		}
		paths = append(paths, p)
		addParents(p)
	}
	if img.WorkingDir != "" {
		dirs[path.Clean(img.WorkingDir)] = true
		addParents(path.Clean(img.WorkingDir))
	}
	for p := range img.Files {
		delete(dirs, p)
	}
	dirList := make([]string, 0, len(dirs))
	for d := range dirs {
		dirList = append(dirList, d)
	}
	sort.Strings(dirList)
	sort.Strings(paths)

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	epoch := time.Unix(0, 0)
	for _, d := range dirList {
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	for _, p := range paths {
		f := img.Files[p]
		data, mode := f.Data, f.Mode.Perm()
		if f.Source != "" {
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, fmt.Errorf("image file %s: %w", p, err)
			}
			data = b
			if mode == 0 {
				st, err := os.Stat(f.Source)
				if err != nil {
					return nil, fmt.Errorf("image file %s: %w", p, err)
				}
				mode = st.Mode().Perm()
			}
		}
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Name: strings.TrimPrefix(p, "/"), Mode: int64(mode), Size: int64(len(data)), Typeflag: tar.TypeReg, ModTime: epoch}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
