// Package powerloss is a power-loss harness for fwagent. Its test runs real
// fwagent binaries against a throttled repository, kills the agent with
// SIGKILL at random points of an update (metadata refresh, disabling the
// slot, download and write, commit and read-back, saving the pending
// install, switching the bootloader), optionally emulates what a power cut
// adds to a process kill (a torn redundant U-Boot environment copy, lost
// unsynced slot blocks), then acts as the bootloader and checks that the
// device only ever boots a complete, released image (or its factory image)
// and that the next update succeeds.
//
// It owns no production code: see docs/powerloss.md for what it proves and
// how to run it.
package powerloss
