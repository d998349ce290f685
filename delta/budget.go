package delta

// The encoder's memory budget (issue 20: encode peak RSS at most 512 MiB for
// any image up to 2 GiB, whatever the machine's core count). Each block
// worker holds its own compressors (a pure-Go zstd encoder at its best
// compression, a libzstd level-19 context where cgo is on) and block
// buffers: 32-51 MiB measured, so on a 16-core runner the workers alone
// would pass the budget (cosign arm64, 87 MiB: 332 MiB peak with 1 worker,
// 448 with 4, 605 with 8, 813 with 16, before the cap; the arm64 ext4
// rootfs, 224 MiB: 466 MiB with 2 workers, 517 with 3).
const (
	memBudget = 512 << 20
	// workerMem is what one block worker adds to the peak (measured
	// 32-51 MiB; rounded up)
	workerMem = 56 << 20
	// otherMem is the rest of the encoder's peak that does not scale with
	// the base: the target's blocks in flight, the collector, the runtime
	otherMem = 96 << 20
	// mappedResident is how much of a mapped base above residentBase is
	// resident at the peak (its pages are dropped past 96 MiB, after each
	// block; measured up to 192 MiB on the 2 GiB pair)
	mappedResident = 256 << 20
)

// memUse is what an encode holds whatever its worker count.
type memUse struct {
	base      int // the base's length
	index     int // the index's bytes (indexBytes)
	converted int // the converted copy of the base (0 without transforms)
}

// fixed is memUse's estimate of the peak without the workers.
func (m memUse) fixed() int {
	resident := m.base
	if m.base > residentBase {
		resident = min(m.base, mappedResident)
	}
	return resident + m.index + m.converted + otherMem
}

// encodeWorkers caps the number of blocks encoded at once so that the
// estimated peak, m.fixed() plus workerMem per worker, stays within
// memBudget; at least one worker, at most requested. The output does not
// depend on it (Encode's blocks are independent).
func encodeWorkers(requested int, m memUse) int {
	fit := (memBudget - m.fixed()) / workerMem
	return max(1, min(requested, fit))
}
