package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

const hw = "acme-gw-v2"

func full(path, version string, counter uint64, sha string, length int64, hardware ...string) Offer {
	if len(hardware) == 0 {
		hardware = []string{hw}
	}
	return Offer{Path: path, SHA256: sha, Length: length,
		FW: &manifests.Firmware{Schema: 1, Hardware: hardware, Version: version, Counter: counter, Kind: manifests.KindFull}}
}

func delta(path string, length int64, base, image Slot) Offer {
	return Offer{Path: path, SHA256: "d-" + path, Length: length,
		FW: &manifests.Firmware{Schema: 1, Hardware: []string{hw}, Version: "x", Counter: 1, Kind: manifests.KindDelta,
			Base:  &manifests.Blob{SHA256: base.SHA256, Length: base.Length},
			Image: &manifests.Blob{SHA256: image.SHA256, Length: image.Length}}}
}

var (
	v1 = full(hw+"/1.0.0/fw.img", "1.0.0", 1, "aa01", 100)
	v2 = full(hw+"/2.0.0/fw.img", "2.0.0", 2, "aa02", 100)
	v3 = full(hw+"/3.0.0/fw.img", "3.0.0", 3, "aa03", 100)
	// v10 has the same counter as v3 but a higher version (numerically).
	v10   = full(hw+"/10.0.0/fw.img", "10.0.0", 3, "aa10", 100)
	other = full("other-hw/9.0.0/fw.img", "9.0.0", 9, "bb09", 100, "other-hw")
	proof = Offer{Path: hw + "/2.0.0/fw.img.sigstore.json", SHA256: "cc", Length: 10}
	bad   = Offer{Path: hw + "/4.0.0/fw.img", SHA256: "dd", Length: 10, Invalid: errors.New("schema 9 unknown")}
)

// running v1 in A, B inactive, counter 1.
func dev() Device {
	return Device{Hardware: hw, Counter: 1,
		Running:  Slot{Name: "A", Status: manifests.SlotGood, SHA256: v1.SHA256, Length: v1.Length},
		Inactive: Slot{Name: "B", Status: manifests.SlotUnknown},
		NextBoot: "A", Capacity: -1}
}

func with(f func(d *Device)) Device { d := dev(); f(&d); return d }

func TestDecide(t *testing.T) {
	failedV2 := Failure{Target: v2.Path, Version: "2.0.0", SHA256: v2.SHA256, Outcome: manifests.OutcomeFellBack, Reason: "slot B did not confirm", At: time.Unix(1, 0)}
	pendingB := func(d *Device) {
		d.Pending = &Pending{Slot: "B", SHA256: v2.SHA256, Version: "2.0.0"}
		d.Inactive = Slot{Name: "B", Status: manifests.SlotInstalled, SHA256: v2.SHA256, Length: 100}
		d.NextBoot = "B"
	}
	for _, tt := range []struct {
		name    string
		offers  []Offer
		dev     Device
		req     Request
		action  Action
		release string // path
		err     error
		msg     string // in the error
	}{
		{name: "nothing offered", dev: dev(), action: NoRelease},
		{name: "only other hardware and proofs", offers: []Offer{other, proof}, dev: dev(), action: NoRelease},
		{name: "running the newest", offers: []Offer{v1}, dev: dev(), action: UpToDate, release: v1.Path},
		{name: "newer release", offers: []Offer{v1, v2, proof, other}, dev: dev(), action: Install, release: v2.Path},
		{name: "highest counter wins", offers: []Offer{v3, v2, v1}, dev: dev(), action: Install, release: v3.Path},
		{name: "same counter: numeric version", offers: []Offer{v3, v10}, dev: dev(), action: Install, release: v10.Path},
		{name: "invalid metadata ignored", offers: []Offer{bad, v2}, dev: dev(), action: Install, release: v2.Path},
		{name: "newest below the counter is a rollback", offers: []Offer{v1, v2},
			dev: with(func(d *Device) { d.Counter = 5 }), err: ErrRollback, msg: "requires at least 5"},
		{name: "named target", offers: []Offer{v1, v2, v3}, dev: dev(), req: Request{Target: v2.Path}, action: Install, release: v2.Path},
		{name: "named target unknown", offers: []Offer{v1}, dev: dev(), req: Request{Target: hw + "/7/x"}, err: ErrUnknownTarget},
		{name: "named target for other hardware", offers: []Offer{other}, dev: dev(), req: Request{Target: other.Path}, err: ErrWrongHardware},
		{name: "named target is a proof", offers: []Offer{proof}, dev: dev(), req: Request{Target: proof.Path}, err: ErrNotFirmware},
		{name: "named target invalid", offers: []Offer{bad}, dev: dev(), req: Request{Target: bad.Path}, err: ErrNotFirmware},
		{name: "named target is a delta", offers: []Offer{delta("d", 5, Slot{}, Slot{})}, dev: dev(), req: Request{Target: "d"}, err: ErrNotFirmware},
		{name: "named downgrade is a rollback", offers: []Offer{v1},
			dev: with(func(d *Device) { d.Counter = 2; d.Running.SHA256 = v2.SHA256 }), req: Request{Target: v1.Path}, err: ErrRollback},
		{name: "trial running blocks", offers: []Offer{v1, v3},
			dev: with(func(d *Device) { d.Pending = &Pending{Slot: "A", SHA256: v1.SHA256, Version: "1.0.0"} }), err: ErrConfirmPending, msg: "fwagent confirm"},
		{name: "trial of the newest is up to date", offers: []Offer{v1},
			dev: with(func(d *Device) { d.Pending = &Pending{Slot: "A", SHA256: v1.SHA256} }), action: UpToDate, release: v1.Path},
		{name: "installed, waiting for the reboot", offers: []Offer{v1, v2}, dev: with(pendingB), action: RebootPending, release: v2.Path},
		{name: "pending superseded by a newer release", offers: []Offer{v1, v2, v3}, dev: with(pendingB), action: Install, release: v3.Path},
		{name: "pending but bootloader would not try it", offers: []Offer{v2},
			dev: with(func(d *Device) { pendingB(d); d.NextBoot = "A" }), action: Install, release: v2.Path},
		{name: "pending but slot not installed", offers: []Offer{v2},
			dev: with(func(d *Device) { pendingB(d); d.Inactive.Status = manifests.SlotWriting }), action: Install, release: v2.Path},
		{name: "fell back: not again", offers: []Offer{v1, v2},
			dev: with(func(d *Device) { d.Failed = []Failure{failedV2} }), action: FailedBefore, release: v2.Path},
		{name: "fell back: --retry", offers: []Offer{v1, v2},
			dev: with(func(d *Device) { d.Failed = []Failure{failedV2} }), req: Request{Retry: true}, action: Install, release: v2.Path},
		{name: "fell back: named target still refused without --retry", offers: []Offer{v1, v2},
			dev: with(func(d *Device) { d.Failed = []Failure{failedV2} }), req: Request{Target: v2.Path}, action: FailedBefore, release: v2.Path},
		{name: "fell back: a newer release installs", offers: []Offer{v1, v2, v3},
			dev: with(func(d *Device) { d.Failed = []Failure{failedV2} }), action: Install, release: v3.Path},
		{name: "failure of another image does not block", offers: []Offer{v1, v2},
			dev: with(func(d *Device) { d.Failed = []Failure{{SHA256: "ffff"}} }), action: Install, release: v2.Path},
		{name: "too large for the slot", offers: []Offer{v2},
			dev: with(func(d *Device) { d.Capacity = 99 }), err: ErrTooLarge, msg: "holds at most 99"},
		{name: "exactly fits", offers: []Offer{v2}, dev: with(func(d *Device) { d.Capacity = 100 }), action: Install, release: v2.Path},
		{name: "up to date needs no room", offers: []Offer{v1}, dev: with(func(d *Device) { d.Capacity = 0 }), action: UpToDate, release: v1.Path},
	} {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Decide(tt.offers, tt.dev, tt.req)
			if tt.err != nil {
				if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.msg) {
					t.Fatalf("Decide: %v, want %v containing %q", err, tt.err, tt.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d.Action != tt.action {
				t.Fatalf("action %v, want %v", d.Action, tt.action)
			}
			got := ""
			if d.Release != nil {
				got = d.Release.Path
			}
			if got != tt.release {
				t.Fatalf("release %q, want %q", got, tt.release)
			}
			if (d.Action == FailedBefore || tt.req.Retry) && (d.Failure == nil || d.Failure.SHA256 != d.Release.SHA256) {
				t.Fatalf("failure %+v, want the earlier failure of the release", d.Failure)
			}
		})
	}
}

func TestDecideReportsIgnoredAndOtherHardware(t *testing.T) {
	d, err := Decide([]Offer{bad, other}, dev(), Request{})
	if err != nil || d.Action != NoRelease {
		t.Fatalf("%+v, %v", d, err)
	}
	if len(d.Ignored) != 1 || d.Ignored[0] != bad.Path || len(d.OtherHardware) != 1 || d.OtherHardware[0] != "other-hw" {
		t.Fatalf("ignored %v, other hardware %v", d.Ignored, d.OtherHardware)
	}
}

func TestDelta(t *testing.T) {
	running := Slot{Name: "A", Status: manifests.SlotGood, SHA256: v1.SHA256, Length: v1.Length}
	image := Slot{SHA256: v2.SHA256, Length: v2.Length}
	small := delta("small", 30, running, image)
	smaller := delta("smaller", 20, running, image)
	huge := delta("huge", 100, running, image)
	wrongBase := delta("wrong-base", 10, Slot{SHA256: "ee", Length: 100}, image)
	wrongImage := delta("wrong-image", 10, running, Slot{SHA256: v3.SHA256, Length: 100})
	for _, tt := range []struct {
		name    string
		offers  []Offer
		running Slot
		want    string
		reason  string
	}{
		{name: "none offered", offers: []Offer{v2}, running: running},
		{name: "matching delta", offers: []Offer{v2, small}, running: running, want: "small"},
		{name: "smallest of several", offers: []Offer{small, smaller, huge}, running: running, want: "smaller"},
		{name: "not smaller than the image", offers: []Offer{huge}, running: running, reason: "not smaller than the full image"},
		{name: "other base", offers: []Offer{wrongBase}, running: running},
		{name: "other image", offers: []Offer{wrongImage}, running: running},
		{name: "running slot not confirmed", offers: []Offer{small}, running: Slot{Status: manifests.SlotInstalled, SHA256: v1.SHA256, Length: 100}},
		{name: "factory image (unknown hash)", offers: []Offer{small}, running: Slot{Status: manifests.SlotUnknown}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := Delta(tt.offers, &v2, tt.running, hw)
			name := ""
			if got != nil {
				name = got.Path
			}
			if name != tt.want || !strings.Contains(reason, tt.reason) || (tt.reason == "" && reason != "") {
				t.Fatalf("Delta = %q, %q; want %q, %q", name, reason, tt.want, tt.reason)
			}
		})
	}
}

func TestVersionLess(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"1.9", "1.10", true},
		{"1.10", "1.9", false},
		{"1.0", "1.0.1", true},
		{"2.0.0-rc1", "2.0.0-rc2", true},
		{"2.0.0-rc10", "2.0.0-rc9", true}, // both parts not numbers: lexical
		{"1.2a", "1.10", true},            // leading numbers 2 < 10
		{"1.x", "1.2", false},
		{"1.2", "1.2", false},
	} {
		if got := VersionLess(tt.a, tt.b); got != tt.want {
			t.Errorf("VersionLess(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestFailedRelease(t *testing.T) {
	fs := []Failure{{SHA256: "a", Outcome: "fell-back"}, {SHA256: "b"}, {SHA256: "a", Outcome: "unhealthy"}}
	if f := FailedRelease(fs, "a"); f == nil || f.Outcome != "unhealthy" {
		t.Fatalf("FailedRelease = %+v, want the newest failure of a", f)
	}
	if FailedRelease(fs, "c") != nil {
		t.Fatal("an image that never failed is reported failed")
	}
}

func TestDeltaBases(t *testing.T) {
	image := Slot{SHA256: v2.SHA256, Length: v2.Length}
	b1 := Slot{SHA256: v1.SHA256, Length: v1.Length}
	short := Slot{SHA256: "ab", Length: 50}
	otherHW := delta("other-hw", 10, short, image)
	otherHW.FW.Hardware = []string{"other-hw"}
	many := []Offer{v2}
	for i := range MaxDeltaBases + 2 {
		many = append(many, delta(fmt.Sprint("d", i), 10, Slot{SHA256: fmt.Sprintf("b%d", i), Length: int64(200 - i)}, image))
	}
	for _, tt := range []struct {
		name   string
		offers []Offer
		want   []string // SHA-256s, in order
	}{
		{name: "none", offers: []Offer{v1, v2}},
		{name: "shortest first, each once", offers: []Offer{v2, delta("a", 30, b1, image), delta("b", 20, short, image), delta("c", 25, b1, image)}, want: []string{"ab", v1.SHA256}},
		{name: "deltas to another image", offers: []Offer{delta("x", 10, b1, Slot{SHA256: v3.SHA256, Length: v3.Length})}},
		{name: "another hardware", offers: []Offer{otherHW}},
		{name: "bounded", offers: many, want: []string{"b5", "b4", "b3", "b2"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, b := range DeltaBases(tt.offers, &v2, hw) {
				got = append(got, b.SHA256)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("DeltaBases = %v, want %v", got, tt.want)
			}
		})
	}
}
