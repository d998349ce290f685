package test

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// TestMetricsEndToEnd runs the real programs: fwrepo serves a published
// repository and counts a device's requests at /metrics; the device
// installs from it and `fwagent metrics --out` writes a node_exporter
// textfile that Prometheus's parser reads.
func TestMetricsEndToEnd(t *testing.T) {
	bin := buildPrograms(t)
	dir := t.TempDir()
	env := append(os.Environ(), "FWCTL_PASSPHRASE=metrics", "CI=1")
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir, cmd.Env = dir, env
		out, err := cmd.CombinedOutput()
		if err != nil && !(name == "fwagent" && len(args) > 2 && args[2] == "update" && cmd.ProcessState.ExitCode() == 10) {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if err := os.WriteFile(filepath.Join(dir, "fw.img"), bytes.Repeat([]byte("v1 "), 50000), 0o644); err != nil {
		t.Fatal(err)
	}
	run("fwctl", "init", "ws")
	run("fwctl", "-w", "ws", "target", "add", "fw.img", "--hardware", "acme-gw-v2", "--version", "1.0.0", "--counter", "1")
	run("fwctl", "-w", "ws", "publish", "--out", "repo")

	srv := exec.Command(filepath.Join(bin, "fwrepo"), "serve", "--dir", "repo", "--addr", "127.0.0.1:0")
	srv.Dir, srv.Env = dir, env
	stdout, _ := srv.StdoutPipe()
	srv.Stderr = io.Discard
	var err error
	if err = srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Process.Kill(); srv.Wait() })
	br := bufio.NewReader(stdout)
	var line string
	for !strings.Contains(line, " on http://") { // "fwrepo serving DIR on http://ADDR"
		if line, err = br.ReadString('\n'); err != nil {
			t.Fatalf("fwrepo serve exited before it said where it serves: %v", err)
		}
	}
	url := strings.TrimSpace(line[strings.Index(line, "http://"):])

	// The device: examples/config/simulator.json, pointed at this server.
	dev := filepath.Join(dir, "device")
	os.MkdirAll(dev, 0o755)
	cfg, err := os.ReadFile(filepath.Join("..", "examples", "config", "simulator.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.Replace(cfg, []byte("http://127.0.0.1:8080"), []byte(url), 1)
	os.WriteFile(filepath.Join(dev, "config.json"), cfg, 0o644)
	os.WriteFile(filepath.Join(dev, "slotA.img"), []byte("factory\n"), 0o644)
	os.WriteFile(filepath.Join(dev, "cmdline"), []byte("console=ttyS0 fwctl.slot=A\n"), 0o644)
	c := "device/config.json"
	run("fwagent", "-c", c, "provision", "--root", "ws/metadata/1.root.json")
	run("fwagent", "-c", c, "update")
	run("fwagent", "-c", c, "simulate-boot")
	run("fwagent", "-c", c, "confirm")
	run("fwagent", "-c", c, "metrics", "--out", "device/fwagent.prom")

	b, err := os.ReadFile(filepath.Join(dev, "fwagent.prom"))
	if err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("fwagent metrics: not the text format: %v\n%s", err, b)
	}
	if v := fams["fwagent_security_counter"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("fwagent_security_counter = %v after confirming counter 1\n%s", v, b)
	}
	if !strings.Contains(string(b), `fwagent_info{hardware="acme-gw-v2",booted_slot="B",next_boot="B",version="1.0.0"`) {
		t.Errorf("fwagent_info does not show slot B running 1.0.0:\n%s", b)
	}

	var res *http.Response
	for i := 0; i < 50; i++ { // the counters are updated after each response is written
		if res, err = http.Get(url + "/metrics"); err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if fams, err = p.TextToMetricFamilies(bytes.NewReader(body)); err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		if counter(fams, "fwrepo_http_requests_total", "kind", "image") >= 1 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	for kind, min := range map[string]float64{"timestamp": 1, "metadata": 2, "image": 1} {
		if got := counter(fams, "fwrepo_http_requests_total", "kind", kind); got < min {
			t.Errorf("fwrepo_http_requests_total{kind=%q} = %v, want >= %v", kind, got, min)
		}
	}
	if got := counter(fams, "fwrepo_http_response_bytes_total", "kind", "image"); got < 150000 {
		t.Errorf("fwrepo_http_response_bytes_total{kind=\"image\"} = %v, want the 150000-byte image", got)
	}
}

// counter sums a family's series whose label has value.
func counter(fams map[string]*dto.MetricFamily, name, label, value string) float64 {
	var sum float64
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
