package vm

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fwctl/fwctl/internal/testenv"
)

// Disk layout written by scripts/vm-image.sh (512-byte sectors).
const (
	sectorSize  = 512
	bootStart   = 2048
	bootSectors = 48 * 2048
	slotSectors = 8 * 2048
	slotAStart  = bootStart + bootSectors
	slotBStart  = slotAStart + slotSectors
	dataStart   = slotBStart + slotSectors
	dataSectors = 32 * 2048
)

// image is the machine built once per agent binary: kernel, initramfs and
// the pristine disk.
type image struct {
	dir     string // vmlinuz, initrd.img, disk.img, factory.img
	qemu    string
	accel   string // "kvm" or "tcg"
	factory []byte
	platform
}

var (
	imageOnce sync.Once
	imageErr  error
	built     *image
)

// repoRoot is the module root (two levels up from test/vm).
func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

// cacheDir is where images and the kernel .deb are kept between runs.
func cacheDir() string {
	if d := os.Getenv("FWCTL_VM_CACHE"); d != "" {
		return d
	}
	h, _ := os.UserHomeDir()
	return filepath.Join(h, ".cache", "fwctl-vm")
}

// accel picks KVM when the host's KVM runs ordinary guests (kvm_intel or
// kvm_amd), else TCG. A KVM that only runs paravirtualized guests (PVM,
// as on some cloud machines) cannot boot a BIOS and GRUB: /dev/kvm opens
// but the guest hangs in real mode. FW_VM_ACCEL overrides.
func accel() string {
	if a := os.Getenv("FW_VM_ACCEL"); a != "" {
		return a
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return "tcg"
	}
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			return "kvm"
		}
	}
	return "tcg"
}

// needImage builds (or reuses) the x86_64 machine image.
func needImage(t *testing.T) *image {
	t.Helper()
	qemu := testenv.LookPath(t, "qemu-system-x86_64", "apt-get install qemu-system-x86 (scripts/deps.sh)")
	for _, p := range []string{"busybox", "grub-mkimage", "mke2fs", "sfdisk", "grub-editenv", "apt-get"} {
		testenv.LookPath(t, p, "scripts/deps.sh installs busybox-static, grub-pc-bin, e2fsprogs, fdisk")
	}
	if _, err := os.Stat("/usr/lib/grub/i386-pc/boot.img"); err != nil {
		testenv.Missing(t, "GRUB for BIOS (grub-pc-bin)", "apt-get install grub-pc-bin (scripts/deps.sh)")
	}
	imageOnce.Do(func() { built, imageErr = buildImage(qemu) })
	if imageErr != nil {
		if errors.Is(imageErr, errNoKernel) {
			testenv.Missing(t, "the Debian kernel package linux-image-amd64", imageErr.Error())
		}
		t.Fatal(imageErr)
	}
	return built
}

var errNoKernel = errors.New("apt-get download linux-image-amd64 failed")

// buildCached makes the cache directory dir with build unless it is
// complete (it has its stamp). build writes into a directory beside dir,
// which is then renamed into place: test processes running at once (a
// kill run, a crash-state run, make test) share the cache, and must never
// boot or remove each other's half-built image (seen: an initramfs that
// two builds wrote at once, "Initramfs unpacking failed: broken padding").
func buildCached(dir string, build func(tmp string) error) error {
	if _, err := os.Stat(filepath.Join(dir, "stamp")); err == nil {
		return nil
	}
	tmp := fmt.Sprintf("%s.tmp%d", dir, os.Getpid())
	os.RemoveAll(tmp)
	if err := build(tmp); err != nil {
		os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		os.RemoveAll(tmp) // another process built it first
		if _, serr := os.Stat(filepath.Join(dir, "stamp")); serr != nil {
			return err
		}
	}
	return nil
}

func buildImage(qemu string) (*image, error) {
	root := repoRoot()
	cache := cacheDir()
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return nil, err
	}
	// per process: processes running at once would otherwise rewrite the
	// binary while another one reads it
	agent := filepath.Join(cache, fmt.Sprintf("fwagent-amd64.%d", os.Getpid()))
	defer os.Remove(agent)
	if out, err := exec.Command(filepath.Join(root, "scripts", "build-agent.sh"), "amd64", agent).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("scripts/build-agent.sh amd64: %v\n%s", err, out)
	}
	key, err := inputsKey(agent, filepath.Join(root, "scripts", "vm-image.sh"), filepath.Join(root, "scripts", "lib", "vm-modules.sh"),
		filepath.Join(root, "examples", "boot", "grub.cfg"))
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "x86_64", "image-"+key)
	err = buildCached(dir, func(tmp string) error {
		cmd := exec.Command(filepath.Join(root, "scripts", "vm-image.sh"), "x86_64", agent, tmp)
		cmd.Env = append(os.Environ(), "FWCTL_VM_CACHE="+cache)
		if out, err := cmd.CombinedOutput(); err != nil {
			if bytes.Contains(out, []byte("linux-image")) {
				return fmt.Errorf("%w: %s", errNoKernel, out)
			}
			return fmt.Errorf("scripts/vm-image.sh: %v\n%s", err, out)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	factory, err := os.ReadFile(filepath.Join(dir, "factory.img"))
	if err != nil {
		return nil, err
	}
	return &image{dir: dir, qemu: qemu, accel: accel(), factory: factory, platform: x86GRUB}, nil
}

// inputsKey names an image's cache directory by the files it is built
// from (the agent, the scripts, the boot configuration), in this order.
func inputsKey(files ...string) (string, error) {
	h := sha256.New()
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return "", err
		}
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// control is what the host hands the machine for one boot: a tar archive
// on the second disk with run.sh (the steps), images (name and size of
// every image a slot may hold, hashed by init) and any other files.
type control struct {
	files map[string][]byte
}

func (c control) write(path string) error {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for name, data := range c.files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data))}); err != nil {
			return err
		}
		tw.Write(data)
	}
	if err := tw.Close(); err != nil {
		return err
	}
	n := (b.Len() + 65535) / 65536 * 65536
	b.Write(make([]byte, n-b.Len()))
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// boot is one power-on of the machine, from QEMU's start until it powers
// off, dies or is killed.
type boot struct {
	lines  []string
	times  []time.Duration // since QEMU started, per line
	slot   string          // "A" or "B" from the kernel command line; "" if init never ran
	hashes map[string]string
	rc     map[string]int // exit code per step (FWVM rc STEP N)
	done   bool           // init reached its end and powered off
	killed bool
	grub   string // GRUB's "FWVM grub ..." line
	took   time.Duration
	errs   []string // FWVM error lines
	start  time.Time
	// handedOver: GRUB chose a slot and was stopped before loading the
	// kernel (the first half of a split boot); saved: the machine was
	// saved at a wait; restores counts halves restored from a saved machine
	handedOver, saved bool
	restores          int
}

// transcript is the console output, for failure messages.
func (b *boot) transcript() string {
	var s strings.Builder
	for i, l := range b.lines {
		fmt.Fprintf(&s, "  %7.3fs %s\n", b.times[i].Seconds(), l)
	}
	return s.String()
}

var (
	ansi   = regexp.MustCompile(`\x1b\[[0-9;?]*[a-zA-Z]|\x1bc`)
	hashRe = regexp.MustCompile(`^FWVM hash (\S+) ([0-9a-f]{64})$`)
	rcRe   = regexp.MustCompile(`^FWVM rc (\S+) (\d+)$`)
)

// runOpts is one QEMU process of a boot.
type runOpts struct {
	disk, ctl string
	log       string // record the disk's writes and flushes with blklogwrites to this file
	// incoming restores a saved machine (a QEMU migration stream) instead
	// of powering on; the host then answers the wait the machine was saved
	// in.
	incoming string
	// saveAt is a line prefix ("FWVM wait NAME"): the machine is stopped
	// there and saved to saveTo, and QEMU quits. Any other wait line is
	// answered at once.
	saveAt, saveTo string
	// handover stops the machine (SIGKILL) at GRUB's "FWVM grub" line,
	// printed after its last disk write and before it loads the kernel:
	// the first half of a split boot.
	handover bool
	// watch sees every console line as it arrives (at: since the boot's
	// start) and may return true to have the machine killed at once; kill,
	// when it receives, kills the machine too.
	watch func(line string, at time.Duration) bool
	kill  <-chan struct{}
	// into continues an earlier half of the same boot: lines and times are
	// appended to it, times counted from its start.
	into *boot
}

// run runs one QEMU process.
func (im *image) run(ctx context.Context, o runOpts) (*boot, error) {
	args := []string{"-accel", im.accel, "-m", "256", "-smp", "1", "-display", "none", "-monitor", "none",
		"-serial", "stdio", "-no-reboot", "-nodefaults", "-net", "none"}
	args = append(args, im.qemuArgs...)
	if o.log != "" {
		args = append(args,
			"-blockdev", "driver=file,filename="+o.disk+",node-name=disk0,cache.direct=off",
			"-blockdev", "driver=file,filename="+o.log+",node-name=log0",
			"-blockdev", "driver=blklogwrites,file=disk0,log=log0,log-sector-size=512,node-name=logged0",
			"-device", "virtio-blk-pci,drive=logged0")
	} else {
		args = append(args, "-drive", "file="+o.disk+",format=raw,if=virtio,cache=writeback")
	}
	args = append(args,
		"-drive", "file="+o.ctl+",format=raw,if=virtio,readonly=on",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0,romfile=")
	var qmpPath string
	if o.incoming != "" || o.saveAt != "" {
		d, err := os.MkdirTemp("", "fwvm")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		qmpPath = filepath.Join(d, "qmp")
		args = append(args, "-qmp", "unix:"+qmpPath+",server=on,wait=off")
	}
	if o.incoming != "" {
		args = append(args, "-incoming", "exec:cat "+o.incoming)
	}
	cmd := exec.CommandContext(ctx, im.qemu, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b := o.into
	if b == nil {
		b = &boot{hashes: map[string]string{}, rc: map[string]int{}, start: time.Now()}
	}
	start := b.start
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var once sync.Once
	doKill := func(power bool) {
		once.Do(func() {
			b.killed = power
			cmd.Process.Kill() // SIGKILL: the whole machine loses power
		})
	}
	// go answers a wait: the host's clock, as a fresh boot reads it from
	// the RTC
	goLine := func() { fmt.Fprintf(in, "go %d\n", time.Now().Unix()) }
	if o.incoming != "" {
		q, err := dialQMP(ctx, qmpPath)
		if err == nil {
			err = q.waitRunning(ctx)
			q.close()
		}
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			return b, fmt.Errorf("restoring %s: %v: %s", o.incoming, err, strings.TrimSpace(stderr.String()))
		}
		b.restores++
		goLine()
	}
	stop := make(chan struct{})
	go func() {
		select {
		case <-o.kill:
			doKill(true)
		case <-stop:
		}
	}()
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var saveErr error
	for sc.Scan() {
		line := strings.TrimSpace(ansi.ReplaceAllString(sc.Text(), ""))
		if line == "" || strings.HasPrefix(line, "go ") {
			continue // empty, or the tty's echo of the host's answer
		}
		at := time.Since(start)
		b.lines = append(b.lines, line)
		b.times = append(b.times, at)
		switch {
		case strings.HasPrefix(line, "FWVM boot slot="):
			b.slot = strings.TrimPrefix(line, "FWVM boot slot=")
		case strings.HasPrefix(line, im.loader+" "):
			b.grub = line
		case line == "FWVM done":
			b.done = true
		case strings.HasPrefix(line, "FWVM error"):
			b.errs = append(b.errs, line)
		}
		if m := hashRe.FindStringSubmatch(line); m != nil {
			b.hashes[m[1]] = m[2]
		}
		if m := rcRe.FindStringSubmatch(line); m != nil {
			b.rc[m[1]], _ = strconv.Atoi(m[2])
		}
		if o.watch != nil && o.watch(line, at) {
			doKill(true)
		}
		switch {
		case o.handover && strings.HasPrefix(line, im.loader+" "):
			b.handedOver = true
			doKill(false)
		case o.saveAt != "" && line == o.saveAt:
			if saveErr = save(ctx, qmpPath, o.saveTo); saveErr != nil {
				doKill(false)
			}
			b.saved = saveErr == nil
		case strings.HasPrefix(line, "FWVM wait "):
			goLine()
		}
	}
	close(stop)
	in.Close()
	err = cmd.Wait()
	b.took = time.Since(start)
	if ctx.Err() != nil {
		return b, fmt.Errorf("machine did not power off within its time limit:\n%s", b.transcript())
	}
	if saveErr != nil {
		return b, fmt.Errorf("saving the machine at %q: %v: %s", o.saveAt, saveErr, strings.TrimSpace(stderr.String()))
	}
	if err != nil && !b.killed && !b.handedOver {
		return b, fmt.Errorf("qemu: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return b, nil
}

// save stops the machine, writes it to path (QEMU migration to a file)
// and quits QEMU.
func save(ctx context.Context, qmpPath, path string) error {
	q, err := dialQMP(ctx, qmpPath)
	if err != nil {
		return err
	}
	defer q.close()
	if _, err := q.do("stop", nil); err != nil {
		return err
	}
	if _, err := q.do("migrate", map[string]any{"uri": "exec:cat > " + path}); err != nil {
		return err
	}
	for {
		r, err := q.do("query-migrate", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		json.Unmarshal(r, &st)
		switch st.Status {
		case "completed":
			_, err := q.do("quit", nil)
			if err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			return nil
		case "failed", "cancelled":
			return fmt.Errorf("migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// qmp is a QEMU Machine Protocol connection.
type qmp struct {
	c  net.Conn
	rd *json.Decoder
}

func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var c net.Conn
	var err error
	for {
		if c, err = net.Dial("unix", path); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("QMP %s: %v", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	q := &qmp{c: c, rd: json.NewDecoder(c)}
	var greeting map[string]any
	if err := q.rd.Decode(&greeting); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := q.do("qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) close() { q.c.Close() }

// do runs one command and returns its result, skipping events.
func (q *qmp) do(cmd string, args map[string]any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	if err := json.NewEncoder(q.c).Encode(req); err != nil {
		return nil, err
	}
	for {
		var r struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Desc string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := q.rd.Decode(&r); err != nil {
			return nil, err
		}
		switch {
		case r.Event != "":
			continue
		case r.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s", cmd, r.Error.Desc)
		}
		return r.Return, nil
	}
}

// waitRunning waits until a restored machine is loaded and runs it.
func (q *qmp) waitRunning(ctx context.Context) error {
	for {
		r, err := q.do("query-status", nil)
		if err != nil {
			return err
		}
		var st struct {
			Status string `json:"status"`
		}
		json.Unmarshal(r, &st)
		switch st.Status {
		case "running":
			return nil
		case "paused":
			// loaded: the machine was stopped when it was saved
			if _, err := q.do("cont", nil); err != nil {
				return err
			}
		case "inmigrate", "prelaunch", "restore-vm", "finish-migrate", "postmigrate":
		default:
			return fmt.Errorf("restored machine is %s", st.Status)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// copyFile copies a disk image (sparse-unaware; images are small).
func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
