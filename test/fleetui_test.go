package test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo"
	"github.com/fwctl/fwctl/test/harness"
)

// xssCheck is a health check name that ends up in a failure reason: text
// a device controls, which the fleet view must show as text.
const xssCheck = `<script>window.pwned=1</script>`

// waitDeadline bounds each wait of the browser tests.
const waitDeadline = 90 * time.Second

// TestFleetView: the real fwrepo binary with its SQLite inventory and
// director, real fwagent devices with file slots and file identities, and
// the fleet view in a real headless Chromium: an operator logs in and
// starts a two-wave rollout, a viewer sees it without buttons, wave 1
// completes on its device's signed report, wave 2's device fails its
// health check and the rollout halts, showing the reason escaped.
// FW_SCREENSHOT=1 writes docs/img/fleet-view.png.
//
// Every wait polls the page (WaitVisible re-queries each document the tab
// loads) under waitDeadline, a bound for a busy machine, not a timing
// assumption.
func TestFleetView(t *testing.T) {
	chrome := testenv.Chromium(t)
	bin := buildPrograms(t)
	rel := harness.NewRelease(t)
	tg := rel.Add([]byte("firmware 2.0.0\n"), repo.AddOptions{Version: "2.0.0", Counter: 2})
	rel.Publish()
	work := t.TempDir()
	db := filepath.Join(work, "fleet.db")
	run := func(dir string, ok func(int) bool, name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "FWREPO_DB="+db)
		out, err := cmd.Output()
		code := cmd.ProcessState.ExitCode()
		if err != nil && (ok == nil || !ok(code)) {
			t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderrOf(err))
		}
		return string(out)
	}
	run(work, nil, "fwrepo", "director", "init", "--out", "director", "--dir", rel.Pub, "--insecure-plaintext-keys")
	srv := exec.Command(filepath.Join(bin, "fwrepo"), "serve", "--dir", rel.Pub, "--addr", "127.0.0.1:0", "--db", db,
		"--director-key", "director/online.key", "--rollout-interval", "200ms", "--ui-refresh", "1s")
	srv.Dir = work
	stdout, _ := srv.StdoutPipe()
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Process.Kill(); _ = srv.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	m := regexp.MustCompile(`on (http://\S+)`).FindStringSubmatch(line)
	if err != nil || m == nil {
		t.Fatalf("fwrepo serve: %q %v", line, err)
	}
	url := m[1]

	devices := map[string]string{}
	for _, id := range []string{"gw-1", "gw-2"} {
		cfg := harness.DeviceConfig(url)
		cfg["bootloader"] = map[string]any{"type": "file", "path": "bootenv", "tries": 3}
		cfg["booted_slot"] = map[string]string{"cmdline": "cmdline", "param": "fwctl.slot"}
		cfg["identity"] = map[string]any{"key_file": "state/identity.key"}
		cfg["report"] = map[string]any{"device_id": id}
		cfg["director"] = map[string]any{"root": filepath.Join(work, "director", "1.root.json"), "device_id": id}
		if id == "gw-2" {
			cfg["health_checks"] = []map[string]any{{"name": xssCheck, "command": []string{"false"}, "timeout": "5s"}}
		}
		hd, err := harness.WriteDevice(filepath.Join(work, id), cfg, []byte("factory image"))
		if err != nil {
			t.Fatal(err)
		}
		root := filepath.Join(work, id+".root.json")
		if err := os.WriteFile(root, rel.Root(), 0o644); err != nil {
			t.Fatal(err)
		}
		run(hd.Dir, nil, "fwagent", "-c", "config.json", "provision", "--root", root)
		pem := run(hd.Dir, nil, "fwagent", "-c", "config.json", "identity", "--pem")
		if err := os.WriteFile(filepath.Join(work, id+".pem"), []byte(pem), 0o644); err != nil {
			t.Fatal(err)
		}
		run(work, nil, "fwrepo", "devices", "add", id, "--pubkey", id+".pem")
		run(work, nil, "fwrepo", "devices", "tag", id, "site=berlin")
		run(hd.Dir, nil, "fwagent", "-c", "config.json", "report")
		devices[id] = hd.Dir
	}
	opTok := strings.TrimSpace(run(work, nil, "fwrepo", "token", "create", "--role", "operator", "alice"))
	viewTok := strings.TrimSpace(run(work, nil, "fwrepo", "token", "create", "--role", "viewer", "victor"))
	run(work, nil, "fwrepo", "rollout", "create", "--id", "r1", "--target", tg.Path, "--filter", "site=berlin", "--waves", "1,1")

	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.WindowSize(1280, 900))...)
	t.Cleanup(cancel)
	// browser opens a tab. Its context has no deadline: the first Run
	// allocates the tab, and a deadline on that context would close it
	// (and lose the page a failure should show).
	browser := func() context.Context {
		ctx, cancel := chromedp.NewContext(actx)
		t.Cleanup(cancel)
		if err := chromedp.Do(ctx); err != nil {
			t.Fatalf("start Chromium: %v", err)
		}
		return ctx
	}
	// wait runs actions (WaitVisible of a selector: chromedp re-queries
	// it in every document the tab loads, across the page's own
	// refreshes) under a generous deadline, and on failure shows the page.
	wait := func(ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		wctx, wcancel := context.WithTimeout(ctx, waitDeadline)
		defer wcancel()
		if err := chromedp.Do(wctx, actions...); err != nil {
			hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
			defer hcancel()
			loc, _ := chromedp.Run(hctx, chromedp.Location())
			html, _ := chromedp.Run(hctx, chromedp.OuterHTML("html"))
			t.Fatalf("waiting for %s: %v\nat %s:\n%s", what, err, loc, html)
		}
	}
	login := func(ctx context.Context, tok string) {
		t.Helper()
		wait(ctx, "log in", chromedp.Navigate(url+"/ui/"), chromedp.WaitVisible("#token"),
			chromedp.SendKeys("#token", tok), chromedp.Click("#login"),
			chromedp.WaitVisible("#rollouts"))
	}

	op := browser()
	login(op, opTok)
	wait(op, "rollout running", chromedp.Click("#start-r1"), chromedp.WaitVisible(`#rollout-r1[data-status="running"]`))

	// The viewer's tab is its own browser: a background tab would not
	// reload itself (meta refresh) in time.
	vactx, vcancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox)...)
	t.Cleanup(vcancel)
	viewer, vcancel2 := chromedp.NewContext(vactx)
	t.Cleanup(vcancel2)
	if err := chromedp.Do(viewer); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	login(viewer, viewTok)
	if buttons := evaluate[int](t, viewer, `document.querySelectorAll('button.action').length`); buttons != 0 {
		t.Fatalf("viewer sees %d action buttons, want none", buttons)
	}

	var st struct {
		Devices []struct {
			ID   string `json:"device_id"`
			Wave int    `json:"wave"`
		} `json:"devices"`
	}
	if err := json.Unmarshal([]byte(run(work, nil, "fwrepo", "rollout", "status", "r1", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	order := make([]string, 2)
	for _, d := range st.Devices {
		order[d.Wave] = d.ID
	}
	if order[1] != "gw-2" {
		t.Fatalf("wave 2 is %s; the test expects the unhealthy gw-2 there", order[1])
	}
	// A device cycle: install (as soon as the director names the release
	// for it: wave 2's device is named only after wave 1 succeeded, so
	// fwagent update is polled until it installs), reboot, confirm (or
	// fall back), report.
	cycle := func(id string) {
		t.Helper()
		dir := devices[id]
		deadline := time.Now().Add(waitDeadline)
		for {
			cmd := exec.Command(filepath.Join(bin, "fwagent"), "-c", "config.json", "update")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if code := cmd.ProcessState.ExitCode(); code == 10 {
				break
			} else if code != 0 || time.Now().After(deadline) {
				t.Fatalf("%s: fwagent update: %v (exit %d, want 10: installed)\n%s", id, err, code, out)
			}
			time.Sleep(200 * time.Millisecond) // the poll interval, not a timing assumption
		}
		run(dir, nil, "fwagent", "-c", "config.json", "simulate-boot")
		run(dir, func(int) bool { return true }, "fwagent", "-c", "config.json", "confirm")
		run(dir, func(int) bool { return true }, "fwagent", "-c", "config.json", "simulate-boot")
		run(dir, nil, "fwagent", "-c", "config.json", "report")
	}
	cycle(order[0])
	wait(op, "wave 1 complete in the operator's page", chromedp.WaitVisible(`#wave-r1-1[data-succeeded="1"]`))
	cycle(order[1])
	wait(op, "rollout halted in the operator's page", chromedp.WaitVisible(`#rollout-r1[data-status="halted"]`))
	wait(viewer, "rollout halted in the viewer's page", chromedp.WaitVisible(`#rollout-r1[data-status="halted"]`))
	reasons := evaluate[string](t, op, `Array.from(document.querySelectorAll('.failure-reason, .rollout-reason')).map(e => e.textContent).join('\n')`)
	scripts := evaluate[int](t, op, `document.querySelectorAll('script').length + (window.pwned ? 100 : 0)`)
	if !strings.Contains(reasons, xssCheck) || !strings.Contains(reasons, "above the failure threshold") || scripts != 0 {
		t.Errorf("failure reasons %q (want the halt and the check's name as text), %d script elements (want none)", reasons, scripts)
	}
	screenshot(t, op, "fleet-view.png")

	// The device page, from the list's link: identity strength, slots,
	// the whole attempt history from the signed reports, escaped.
	wait(op, "gw-2's device page", chromedp.Click(`#device-gw-2 a.device-link`),
		chromedp.WaitVisible(`#device[data-id="gw-2"][data-identity="file"]`),
		chromedp.WaitVisible(`#history tr.event[data-outcome="installed"]`),
		chromedp.WaitVisible(`#history tr.event[data-outcome="unhealthy"]`),
		// its rollouts, the halted one included: wave 2, failed
		chromedp.WaitVisible(`#device-rollouts tr.device-rollout[data-rollout="r1"][data-status="halted"][data-wave="2"][data-phase="failed"]`))
	text := evaluate[string](t, op, `document.querySelector('#device').textContent + '\n' + document.querySelector('#history').textContent + '\n' + document.querySelector('#device-rollouts').textContent`)
	for _, want := range []string{"file (weaker)", "site=berlin", "acme-gw-v2/2.0.0/firmware.img", "health check failed: " + xssCheck, "above the failure threshold"} {
		if !strings.Contains(text, want) {
			t.Errorf("gw-2's page lacks %q:\n%s", want, text)
		}
	}
	if scripts := evaluate[int](t, op, `document.querySelectorAll('script').length + (window.pwned ? 100 : 0)`); scripts != 0 {
		t.Errorf("device page: %d script elements, want none", scripts)
	}
	screenshot(t, op, "device-view.png")
	wait(op, "gw-1's device page", chromedp.Navigate(url+"/ui/devices/gw-1"),
		chromedp.WaitVisible(`#device[data-id="gw-1"][data-version="2.0.0"]`),
		chromedp.WaitVisible(`#history tr.event[data-outcome="confirmed"]`),
		chromedp.WaitVisible(`#device-rollouts tr.device-rollout[data-rollout="r1"][data-status="halted"][data-wave="1"][data-phase="succeeded"]`))
}

// evaluate returns the value of a JavaScript expression in the tab's page,
// retried under waitDeadline (an evaluation racing the page's own refresh
// fails; the next one runs in the new document).
func evaluate[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	ectx, cancel := context.WithTimeout(ctx, waitDeadline)
	defer cancel()
	for {
		v, err := chromedp.Run(ectx, chromedp.Evaluate[T](expr))
		if err == nil {
			return v
		}
		if ectx.Err() != nil {
			t.Fatalf("evaluate %s: %v", expr, err)
		}
		time.Sleep(100 * time.Millisecond) // between retries
	}
}

// screenshot writes the tab's page to docs/img/NAME with FW_SCREENSHOT=1.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	if os.Getenv("FW_SCREENSHOT") != "1" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, waitDeadline)
	defer cancel()
	png, err := chromedp.Run(sctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(filepath.Join("..", "docs", "img", name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

func stderrOf(err error) string {
	if ee, ok := err.(*exec.ExitError); ok {
		return string(ee.Stderr)
	}
	return fmt.Sprint(err)
}
