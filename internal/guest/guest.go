// Package guest is the contract between `cork run --backend qemu` on the
// host and cork-guest, the init inside the VM: the shares QEMU exports,
// where the guest mounts them, and the spec and status files in the
// control share. It holds no credential: the spec is what the sandbox
// gets (placeholders only, checked by the launcher's session).
package guest

// The virtio-9p shares: mount tag and where the guest mounts it.
const (
	ControlTag   = "corkctl" // the control directory: Spec in, Status out
	ControlDir   = "/cork"
	HomeTag      = "corkhome" // the sandbox home, with the dummy files
	WorkspaceTag = "corkws"   // the workspace, when there is one
	RootTag      = "corkroot" // a root directory image (--image DIR)
)

// Files in the control directory.
const (
	SpecFile   = "spec.json"
	StatusFile = "status"
)

// The guest's network: QEMU user networking, restricted; the proxy is
// forwarded to ProxyAddr and nothing else answers.
const (
	GuestCIDR = "10.0.2.15/24"
	ProxyAddr = "10.0.2.100:3128"
)

// Root is where the guest's root comes from.
type Root string

const (
	RootInitramfs Root = ""      // the initramfs itself
	RootBlock     Root = "block" // an ext4 image on /dev/vda
	RootShare     Root = "share" // a host directory on RootTag
)

// Spec is what the guest runs: written by the host into the control
// directory as JSON.
type Spec struct {
	Argv      []string `json:"argv"`
	Env       []string `json:"env"` // K=V
	Dir       string   `json:"dir"`
	Home      string   `json:"home"`      // where HomeTag is mounted
	Workspace string   `json:"workspace"` // where WorkspaceTag is mounted; "" for none
	Root      Root     `json:"root"`
}
