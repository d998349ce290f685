package fleetui

import (
	"bytes"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fwctl/fwctl/repo/inventory/rollout"
)

type loginPage struct {
	CSRF, Error string
}

type errorPage struct {
	Code            int
	Status, Message string
}

type fleetPage struct {
	Operator *Operator
	CSRF     string
	Flash    string
	Rollouts []Rollout
	Devices  []Device
	Total    int
	Refresh  int
	Now      time.Time
	// Exposure is nil when it could not be answered (ExposureError says
	// why).
	Exposure       *Exposure
	ExposureError  string
	ExposedDevices int
}

type devicePage struct {
	Operator      *Operator
	CSRF          string
	Device        *DeviceDetail
	MaxEvents     int
	MaxRollouts   int
	Advisories    []Advisory
	PastSupport   string
	ExposureError string
	Refresh       int
	Now           time.Time
}

// render writes the named page; a template error becomes a plain 500, so
// that half a page is never sent.
func (h *handler) render(w http.ResponseWriter, code int, name string, data any) {
	var b bytes.Buffer
	if err := pages.ExecuteTemplate(&b, name, data); err != nil {
		h.opt.Log.Error("fleet view: render", "page", name, "err", err)
		http.Error(w, "internal error rendering the page", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// percent is n of total as a whole percentage for a progress bar.
func percent(n, total int) int {
	if total <= 0 {
		return 0
	}
	return n * 100 / total
}

// ago says how long before now t was, coarsely.
func ago(now time.Time, t *time.Time) string {
	if t == nil {
		return "never"
	}
	d := now.Sub(*t).Round(time.Second)
	switch {
	case d < 0:
		return "just now"
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd ago", int(d/(24*time.Hour)))
}

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"percent": percent,
	// mayApprove hides the approve button from a rollout's creator (the
	// service refuses their approval anyway).
	"mayApprove": func(creator, op string) bool { return rollout.CheckApprover(creator, op) == nil },
	"ago":        ago,
	"inc":        func(i int) int { return i + 1 },
	"path":       url.PathEscape,
	"join":       strings.Join,
	"pct":        func(f float64) string { return fmt.Sprintf("%g%%", f*100) },
	"utc":        func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"timep": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	},
}).Parse(templates))

const templates = `
{{define "head"}}<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fwrepo fleet</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f4f5f7}
header{background:#1d2330;color:#fff;padding:.6em 1.2em;display:flex;align-items:center;gap:1em}
header h1{font-size:1.1em;margin:0;flex:1}
main{padding:1em 1.2em;max-width:1200px}
section{background:#fff;border:1px solid #d9dce3;border-radius:6px;padding:.8em 1em;margin-bottom:1em}
h2{font-size:1.05em;margin:.2em 0 .6em}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.3em .5em;border-bottom:1px solid #eceef2;vertical-align:top}
th{font-weight:600;color:#555;font-size:.9em}
code,.mono{font-family:ui-monospace,monospace;font-size:.92em}
.badge{display:inline-block;padding:0 .45em;border-radius:3px;font-size:.85em;background:#e3e6ec}
.s-running,.s-completed,.s-succeeded,.s-confirmed,.s-good,.id-tpm{background:#d5f0dc;color:#14532d}
.s-halted,.s-aborted,.s-failed,.s-fell-back,.s-unhealthy,.s-bad{background:#fbd9d9;color:#7f1d1d}
.s-paused,.s-waiting-approval,.s-deferred,.id-file{background:#fdf0c8;color:#713f12}
.bar{display:flex;height:.8em;width:14em;background:#eceef2;border-radius:3px;overflow:hidden}
.bar span{display:block;height:100%}
.b-ok{background:#22a05a}.b-fail{background:#d33c3c}.b-inst{background:#3b82f6}.b-asg{background:#a5b4fc}.b-def{background:#eab308}
.reason{color:#7f1d1d}
.flash{background:#e0ecff;border:1px solid #9db8e8;padding:.5em .8em;border-radius:4px;margin-bottom:1em}
.error{background:#fbd9d9;border:1px solid #e8a0a0;padding:.5em .8em;border-radius:4px}
form.inline{display:inline}
button{font:inherit;padding:.15em .7em;border-radius:4px;border:1px solid #8a93a6;background:#fff;cursor:pointer}
button.danger{border-color:#d33c3c;color:#7f1d1d}
header button{background:transparent;color:#fff;border-color:#8a93a6}
header .badge{color:#1d2330}
.muted{color:#6b7280}
</style>{{end}}

{{define "login"}}{{template "head"}}</head><body>
<header><h1>fwrepo fleet</h1></header>
<main><section style="max-width:32em">
<h2>Log in</h2>
{{with .Error}}<p class="error" id="login-error">{{.}}</p>{{end}}
<form method="post" action="/ui/login">
<input type="hidden" name="csrf" value="{{.CSRF}}">
<p><label for="token">Operator token</label><br>
<input id="token" name="token" type="password" autocomplete="off" size="50" required autofocus></p>
<p><button type="submit" id="login">Log in</button></p>
</form>
<p class="muted">Tokens are made with <code>fwrepo token create --role viewer|operator NAME</code>.</p>
</section></main></body></html>{{end}}

{{define "error"}}{{template "head"}}</head><body>
<header><h1>fwrepo fleet</h1></header>
<main><section><h2>{{.Code}} {{.Status}}</h2><p class="error">{{.Message}}</p>
<p><a href="/ui/">Back to the fleet</a></p></section></main></body></html>{{end}}

{{define "device"}}{{template "head"}}
<meta http-equiv="refresh" content="{{.Refresh}}; url=/ui/devices/{{path .Device.ID}}">
</head><body>
<header><h1><a href="/ui/" style="color:#fff">fwrepo fleet</a> › <span class="mono">{{.Device.ID}}</span></h1>
<span id="whoami">{{.Operator.Name}} <span class="badge">{{.Operator.Role}}</span></span>
<form class="inline" method="post" action="/ui/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit" id="logout">Log out</button></form>
</header>
<main>{{$root := .}}{{with .Device}}
<section id="device" data-id="{{.ID}}" data-identity="{{.Identity}}" data-version="{{.Version}}" data-exposed="{{.Exposed}}">
<h2>Device <span class="mono">{{.ID}}</span></h2>
<table><tbody>
<tr><th>hardware</th><td>{{with .Hardware}}{{.}}{{else}}<span class="muted">no report yet</span>{{end}}</td></tr>
<tr><th>version</th><td id="device-version">{{with .Version}}{{.}}{{else}}<span class="muted">-</span>{{end}}{{with .Target}} <span class="muted mono">{{.}}</span>{{end}} <span class="muted">(counter {{.Counter}})</span></td></tr>
<tr><th>slots</th><td id="device-slots">{{range .Slots}}<div class="slot" data-slot="{{.Name}}" data-status="{{.Status}}">{{if .Running}}<b>{{.Name}}</b> (running){{else}}{{.Name}}{{end}}: <span class="badge s-{{.Status}}">{{.Status}}</span> {{.Version}}</div>{{else}}<span class="muted">-</span>{{end}}{{with .NextBoot}}<div class="muted">next boot: {{.}}</div>{{end}}</td></tr>
<tr><th>identity</th><td id="device-identity"><span class="badge id-{{.Identity}}">{{.Identity}}{{if eq .Identity "file"}} (weaker){{end}}</span>
{{if eq .Identity "file"}}<span class="muted">its report key is a file on the device's storage and can be copied off it; a TPM key cannot.</span>{{else if eq .Identity "tpm"}}<span class="muted">its report key was generated in the device's TPM and never leaves it.</span>{{else}}<span class="muted">registered from a PEM without an Identity header (an older fwagent).</span>{{end}}
<div class="muted mono">key {{.KeyID}}, registered {{utc .Registered}}</div></td></tr>
<tr><th>last report</th><td title="{{timep .LastSeen}}">{{ago $root.Now .LastSeen}}</td></tr>
<tr><th>tags</th><td class="mono" id="device-tags">{{with .Tags}}{{.}}{{else}}<span class="muted">none</span>{{end}}</td></tr>
<tr><th>rollout</th><td id="device-rollout">{{with .Rollout}}<a href="/ui/#rollout-{{.ID}}" class="mono">{{.ID}}</a> <span class="badge s-{{.Status}}">{{.Status}}</span>, wave {{inc .Wave}}: <span class="badge s-{{.Phase}}">{{.Phase}}</span>{{else}}<span class="muted">not in an active rollout</span>{{end}}</td></tr>
</tbody></table>
</section>
<section id="device-rollouts"><h2>Rollouts <span class="muted">({{len .Rollouts}}{{if ge (len .Rollouts) $root.MaxRollouts}}, the newest {{$root.MaxRollouts}}{{end}})</span></h2>
{{if .Rollouts}}<table><thead><tr><th>rollout</th><th>target</th><th>created</th><th>rollout state</th><th>its wave</th><th>this device</th></tr></thead><tbody>
{{range .Rollouts}}<tr class="device-rollout" id="device-rollout-{{.ID}}" data-rollout="{{.ID}}" data-status="{{.Status}}" data-wave="{{inc .Wave}}" data-phase="{{.Phase}}"><td><a href="/ui/#rollout-{{.ID}}" class="mono">{{.ID}}</a></td><td class="mono">{{.Target}}</td><td class="mono">{{utc .Created}}</td>
<td><span class="badge s-{{.Status}}">{{.Status}}</span>{{with .Reason}} <span class="reason rollout-history-reason">{{.}}</span>{{end}}</td><td>{{inc .Wave}}</td>
<td><span class="badge s-{{.Phase}}">{{.Phase}}</span>{{with .Error}} <span class="reason device-rollout-error">{{.}}</span>{{end}}{{with .LastAt}} <span class="muted mono">{{timep .}}</span>{{end}}</td></tr>
{{end}}</tbody></table>{{else}}<p class="muted">It has not been in a rollout.</p>{{end}}
</section>
<section id="exposure"><h2>Exposure</h2>
{{with $root.ExposureError}}<p class="error">{{.}}</p>{{end}}
{{with $root.PastSupport}}<p class="reason" id="past-support">Its release is past its support date ({{.}}).</p>{{end}}
{{if $root.Advisories}}<table><thead><tr><th>advisory</th><th>affected components of its release</th><th>fixed by</th><th>summary</th></tr></thead><tbody>
{{range $root.Advisories}}<tr class="advisory" id="advisory-{{.ID}}"><td class="mono">{{.ID}}{{with .Aliases}} <span class="muted">({{join . ", "}})</span>{{end}}</td><td class="mono">{{join .Components ", "}}</td><td class="mono">{{with .FixedBy}}{{join . ", "}}{{else}}<span class="muted">no release yet</span>{{end}}</td><td>{{.Summary}}</td></tr>
{{end}}</tbody></table>{{else if not $root.ExposureError}}<p class="muted" id="no-exposure">No imported advisory affects the release it runs.</p>{{end}}
</section>
<section id="history"><h2>History <span class="muted">({{len .Events}} attempts{{if .More}}, the newest {{$root.MaxEvents}}; <code>fwrepo devices history</code> lists all{{end}})</span></h2>
{{if .Events}}<table><thead><tr><th>at</th><th>outcome</th><th>version</th><th>target</th><th>error</th><th>received</th></tr></thead><tbody>
{{range .Events}}<tr class="event" data-outcome="{{.Outcome}}"><td class="mono">{{utc .At}}</td><td><span class="badge s-{{.Outcome}}">{{.Outcome}}</span></td><td>{{.Version}}</td><td class="mono">{{.Target}}</td><td>{{with .Error}}<span class="reason event-error">{{.}}</span>{{end}}</td><td class="mono muted">{{utc .Received}}</td></tr>
{{end}}</tbody></table>{{else}}<p class="muted">No install attempt reported yet.</p>{{end}}
</section>
{{end}}
<p class="muted">Refreshes every {{.Refresh}} s · {{utc .Now}} · <a href="/ui/">all devices</a></p>
</main></body></html>{{end}}

{{define "fleet"}}{{template "head"}}
{{/* The refresh names the page's URL: an action redirects to /ui/#rollout-ID,
and a refresh to the document's own URL with a fragment is only a fragment
navigation (HTML's navigate algorithm), which never reloads. */}}
<meta http-equiv="refresh" content="{{.Refresh}}; url=/ui/">
</head><body>
<header><h1>fwrepo fleet</h1>
<span id="whoami">{{.Operator.Name}} <span class="badge">{{.Operator.Role}}</span></span>
<form class="inline" method="post" action="/ui/logout"><input type="hidden" name="csrf" value="{{.CSRF}}"><button type="submit" id="logout">Log out</button></form>
</header>
<main>
{{with .Flash}}<p class="flash" id="flash">{{.}}</p>{{end}}
<section id="rollouts"><h2>Rollouts</h2>
{{if not .Rollouts}}<p class="muted">No rollouts. Create one with <code>fwrepo rollout create</code>.</p>{{end}}
{{$root := .}}
{{range .Rollouts}}
<div class="rollout" id="rollout-{{.ID}}" data-status="{{.Status}}">
<h3><span class="mono">{{.ID}}</span> <span class="badge s-{{.Status}} status">{{.Status}}</span>
<span class="muted">{{.Target}} to {{.Filter}}</span></h3>
{{with .Reason}}<p class="reason">Reason: <span class="rollout-reason">{{.}}</span></p>{{end}}
<p class="muted">Next wave at {{pct .SuccessThreshold}} succeeded; halts above {{pct .FailureThreshold}} failed.
{{with .CreatedBy}}Created by <span class="created-by">{{.}}</span>.{{end}}
{{if .Approval}}Needs an approval by another operator{{with .ApprovedBy}}: approved by <span class="approved-by">{{.}}</span>{{end}}.{{end}}</p>
<table><thead><tr><th>wave</th><th>progress</th><th>devices</th><th>succeeded</th><th>failed</th><th>installing</th><th>assigned</th><th>deferred</th><th>pending</th><th>withdrawn</th></tr></thead><tbody>
{{$r := .}}{{range $i, $w := .Waves}}
<tr class="wave" id="wave-{{$r.ID}}-{{inc $i}}" data-succeeded="{{.Succeeded}}" data-failed="{{.Failed}}" data-devices="{{.Devices}}">
<td>{{inc $i}}{{if and (eq $i $r.Wave) (ne $r.Status "created")}} ◀{{end}}</td>
<td><div class="bar" title="{{.Succeeded}} succeeded, {{.Failed}} failed of {{.Devices}}"><span class="b-ok" style="width:{{percent .Succeeded .Devices}}%"></span><span class="b-fail" style="width:{{percent .Failed .Devices}}%"></span><span class="b-inst" style="width:{{percent .Installing .Devices}}%"></span><span class="b-def" style="width:{{percent .Deferred .Devices}}%"></span><span class="b-asg" style="width:{{percent .Assigned .Devices}}%"></span></div></td>
<td>{{.Devices}}</td><td>{{.Succeeded}}</td><td>{{.Failed}}</td><td>{{.Installing}}</td><td>{{.Assigned}}</td><td>{{.Deferred}}</td><td>{{.Pending}}</td><td>{{.Withdrawn}}</td></tr>
{{end}}</tbody></table>
{{if .Failures}}<p><b>Failures</b></p><ul class="failures">
{{range .Failures}}<li><span class="mono">{{.DeviceID}}</span> (wave {{inc .Wave}}): <span class="reason failure-reason">{{.Reason}}</span></li>{{end}}
</ul>{{end}}
{{if $root.Operator.CanChange}}{{range .Actions}}
{{if and (eq . "approve") (not (mayApprove $r.CreatedBy $root.Operator.Name))}}<span class="muted approval-note" id="approval-note-{{$r.ID}}">Waiting for another operator's approval (you created it).</span>
{{else}}<form class="inline" method="post" action="/ui/rollouts/{{$r.ID}}/{{.}}"><input type="hidden" name="csrf" value="{{$root.CSRF}}"><button type="submit" class="action{{if eq . "abort"}} danger{{end}}" id="{{.}}-{{$r.ID}}">{{.}}</button></form>
{{end}}{{end}}{{end}}
</div>
{{end}}
</section>
<section id="devices"><h2>Devices <span class="muted">({{.Total}}{{if gt .Total (len .Devices)}}, first {{len .Devices}} shown{{end}})</span></h2>
{{if not .Devices}}<p class="muted">No devices. Register one with <code>fwrepo devices add</code>.</p>{{else}}
<table><thead><tr><th>device</th><th>hardware</th><th>version</th><th>slots</th><th>identity</th><th>last report</th><th>last attempt</th><th>exposure</th><th>tags</th></tr></thead><tbody>
{{range .Devices}}<tr class="device" id="device-{{.ID}}" data-exposed="{{.Exposed}}">
<td class="mono"><a class="device-link" href="/ui/devices/{{path .ID}}">{{.ID}}</a></td><td>{{.Hardware}}</td><td class="version">{{with .Version}}{{.}}{{else}}<span class="muted">-</span>{{end}}</td>
<td>{{range .Slots}}<div>{{if .Running}}<b>{{.Name}}</b> (running){{else}}{{.Name}}{{end}}: <span class="badge">{{.Status}}</span> {{.Version}}</div>{{end}}{{with .NextBoot}}<div class="muted">next boot: {{.}}</div>{{end}}</td>
<td><span class="badge id-{{.Identity}}">{{.Identity}}{{if eq .Identity "file"}} (weaker){{end}}</span></td>
<td title="{{timep .LastSeen}}">{{ago $root.Now .LastSeen}}</td>
<td>{{with .LastOutcome}}<span class="badge s-{{.}}">{{.}}</span>{{end}} {{with .LastError}}<span class="reason">{{.}}</span>{{end}}</td>
<td>{{if $root.Exposure}}{{if .Exposed}}<a class="badge s-failed" href="/ui/devices/{{path .ID}}#exposure">{{.Exposed}} advisor{{if eq .Exposed 1}}y{{else}}ies{{end}}</a>{{else}}<span class="muted">none known</span>{{end}}{{end}}</td>
<td class="mono">{{.Tags}}</td></tr>
{{end}}</tbody></table>{{end}}
</section>
<section id="exposure"><h2>Exposure</h2>
{{with .ExposureError}}<p class="error">{{.}}</p>{{end}}
{{with .Exposure}}{{if .Advisories}}<p id="exposure-summary"><span id="exposed-devices">{{$root.ExposedDevices}}</span> devices run a release that imported advisories affect.</p>
<table><thead><tr><th>advisory</th><th>devices</th><th>summary</th></tr></thead><tbody>
{{range .Advisories}}<tr class="advisory" id="advisory-{{.ID}}" data-devices="{{.Devices}}"><td class="mono">{{.ID}}{{with .Aliases}} <span class="muted">({{join . ", "}})</span>{{end}}</td><td>{{.Devices}}</td><td>{{.Summary}}</td></tr>
{{end}}</tbody></table>{{else}}<p class="muted" id="exposure-summary">No imported advisory affects a release a device runs (<code>fwrepo vulns import</code> imports advisories; <code>fwrepo exposure --dir</code> reads the releases' SBOMs).</p>{{end}}
{{if .PastSupport}}<p class="reason">{{len .PastSupport}} devices run a release past its support date.</p>{{end}}{{end}}
</section>
<p class="muted">Refreshes every {{.Refresh}} s · {{utc .Now}}</p>
</main></body></html>{{end}}
`
