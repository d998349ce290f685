package fwagentcli

import (
	"fmt"
	"io"
	"time"

	"github.com/fwctl/fwctl/agent"
)

// printStatus prints 'fwagent status' for a person.
func printStatus(w io.Writer, st *agent.StatusReport, slots []string) {
	fmt.Fprintf(w, "state        %s\n", st.State)
	fmt.Fprintf(w, "hardware     %s\nrepository   %s\nrunning      slot %s\nnext boot    slot %s\n", st.Hardware, st.Repository, st.BootedSlot, st.NextBoot)
	fmt.Fprintf(w, "counter      %d\ntrust store  %s\nroot         version %d\n", st.Counter, st.TrustStore, st.RootVer)
	fmt.Fprintf(w, "identity     %s\n", identityStrength(st.Identity))
	for _, name := range slots {
		s := st.Slots[name]
		fmt.Fprintf(w, "slot %s       %-9s %s %s\n", name, s.Status, s.Version, s.Target)
	}
	if st.Last != nil {
		fmt.Fprintf(w, "last result  %s\n", attemptLine(*st.Last))
	}
	for _, f := range st.Failed {
		fmt.Fprintf(w, "not retried  %s %s %s: %s (fwagent update --retry)\n", f.Version, f.Outcome, f.At.UTC().Format(time.RFC3339), f.Reason)
	}
	if len(st.History) > 0 {
		fmt.Fprintln(w, "attempts (oldest first):")
		for _, r := range st.History {
			fmt.Fprintf(w, "  %s\n", attemptLine(r))
		}
	}
}

func attemptLine(r agent.Result) string {
	s := fmt.Sprintf("%s %-9s %s %s", r.At.UTC().Format(time.RFC3339), r.Outcome, r.Version, r.Target)
	if r.Error != "" {
		s += ": " + r.Error
	}
	return s
}
