package fwagentcli

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/internal/atomicfile"
)

func (a *app) metricsCmd() *command {
	var out string
	return &command{
		name:  "metrics",
		args:  "[--out FILE]",
		short: "Write the device's update state as Prometheus metrics for node_exporter's textfile collector",
		long: `Reads the local state only (no repository access), like 'fwagent status'.
With --out the file is replaced atomically, as the textfile collector needs;
run it from a timer or after each update, e.g.
  fwagent metrics --out /var/lib/prometheus/node-exporter/fwagent.prom`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&out, "out", "", "write to this .prom file (atomically) instead of stdout")
		},
		run: noArgs("metrics", func() error {
			ag, _, err := a.load(slog.LevelWarn)
			if err != nil {
				return err
			}
			st, err := ag.Status(context.Background())
			if err != nil {
				return code(err)
			}
			var b bytes.Buffer
			writeTextfile(&b, st, time.Now())
			if out == "" {
				_, err := os.Stdout.Write(b.Bytes())
				return err
			}
			return atomicfile.Write(out, b.Bytes(), 0o644)
		}),
	}
}

// writeTextfile renders st in the Prometheus text exposition format. It is
// written by hand: the format is a few lines, and the client library would
// cost the device binary more than all of this.
func writeTextfile(w io.Writer, st *agent.StatusReport, now time.Time) {
	metric := func(name, typ, help string) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	running := ""
	if s := st.Slots[st.BootedSlot]; s != nil {
		running = s.Version
	}
	metric("fwagent_info", "gauge", "The device and the firmware it runs (always 1).")
	fmt.Fprintf(w, "fwagent_info%s 1\n", labels("hardware", st.Hardware, "booted_slot", st.BootedSlot,
		"next_boot", st.NextBoot, "version", running, "trust_store", st.TrustStore))
	metric("fwagent_security_counter", "gauge", "Highest confirmed security counter: images below it are refused.")
	fmt.Fprintf(w, "fwagent_security_counter %d\n", st.Counter)
	metric("fwagent_root_version", "gauge", "Version of the trusted root metadata.")
	fmt.Fprintf(w, "fwagent_root_version %d\n", st.RootVer)
	pending := 0
	if st.Pending != nil {
		pending = 1
	}
	metric("fwagent_update_pending", "gauge", "1 while an installed update waits for a reboot or a confirm.")
	fmt.Fprintf(w, "fwagent_update_pending %d\n", pending)
	metric("fwagent_boots_left", "gauge", "Boot attempts the bootloader still gives the pending slot.")
	fmt.Fprintf(w, "fwagent_boots_left %d\n", st.BootsLeft)

	metric("fwagent_slot_info", "gauge", "Each slot's status and firmware (always 1).")
	names := make([]string, 0, len(st.Slots))
	for n := range st.Slots {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s := st.Slots[n]
		fmt.Fprintf(w, "fwagent_slot_info%s 1\n", labels("slot", n, "status", s.Status, "version", s.Version))
	}

	metric("fwagent_install_attempts", "gauge", "Install attempts in the device's bounded history, by outcome.")
	outcomes := map[string]int{}
	for _, r := range st.History {
		outcomes[r.Outcome]++
	}
	keys := make([]string, 0, len(outcomes))
	for k := range outcomes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "fwagent_install_attempts%s %d\n", labels("outcome", k), outcomes[k])
	}
	metric("fwagent_failed_releases", "gauge", "Releases that failed and are not retried without 'fwagent update --retry'.")
	fmt.Fprintf(w, "fwagent_failed_releases %d\n", len(st.Failed))
	if l := st.Last; l != nil {
		metric("fwagent_last_result_timestamp_seconds", "gauge", "When the last install result was recorded, by outcome and version.")
		fmt.Fprintf(w, "fwagent_last_result_timestamp_seconds%s %d\n", labels("outcome", l.Outcome, "version", l.Version), l.At.Unix())
	}
	metric("fwagent_textfile_timestamp_seconds", "gauge", "When this file was written: alert when it gets old.")
	fmt.Fprintf(w, "fwagent_textfile_timestamp_seconds %d\n", now.Unix())
}

// labels renders {k="v",...}, escaping values as the text format requires.
func labels(kv ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		v := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(kv[i+1])
		fmt.Fprintf(&b, "%s=\"%s\"", kv[i], v)
	}
	b.WriteByte('}')
	return b.String()
}
