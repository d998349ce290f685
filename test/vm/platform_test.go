package vm

// platform is what differs between test/vm's machines: x86_64 booted by
// GRUB (machine_test.go, scripts/vm-image.sh) and arm64 booted by U-Boot
// (arm64_test.go, scripts/vm-image-arm64.sh). Everything else (the disk
// layout, init, the agent's steps, the kill harness) is shared.
type platform struct {
	name string // for logs: "x86_64/GRUB"
	// qemuArgs select the board and its firmware (none for x86_64's
	// default PC with SeaBIOS)
	qemuArgs []string
	// loader is the bootloader's console line once it has chosen a slot
	// and written its environment ("FWVM grub"); loaderName names it in
	// phases ("grub")
	loader, loaderName string
	// bootloader is the agent's bootloader configuration
	bootloader map[string]any
	// files are more files on the control disk (/ctl)
	files map[string][]byte
	// tortureKills is -torture's number of kills (issue 19's goal)
	tortureKills int
	// split: boots may be split (split_test.go): the bootloader's loader
	// line is printed after its last disk write and before it loads the
	// kernel, and bootFiles are what it loads. Otherwise every boot is
	// from power-on.
	split bool
}

var x86GRUB = platform{
	name:         "x86_64/GRUB",
	loader:       "FWVM grub",
	loaderName:   "grub",
	bootloader:   map[string]any{"type": "grub", "path": "/boot/grub/grubenv", "tries": 3, "scheme": "rauc"},
	tortureKills: 200,
	split:        true,
}
