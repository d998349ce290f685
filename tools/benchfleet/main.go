// Command benchfleet is the load generator of 'make bench-fleet': it
// registers N simulated devices (file identities) in an inventory, then,
// against a running 'fwrepo serve --db … --director-key …', has every
// device report once (signed manifests on fresh nonces), starts a one-wave
// rollout of all N devices over the operator API and times it, and then
// polls as N devices would every -poll (the requests a real fwagent makes
// for a poll with no update: timestamp.json of the image repository and of
// the device's director metadata, and a root probe after a timestamp
// without fwrepo's root hint), with signed reports
// on top, for -duration. It prints p50/p99 per poll, requests and bytes per
// poll, and the wave start time.
//
//	benchfleet setup -db DSN -devices N -keys FILE      (prints an operator token)
//	benchfleet run -url URL -keys FILE -token TOKEN -target PATH [-poll 60s -duration 60s]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchfleet setup|run [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "setup":
		err = setup(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: want setup or run", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchfleet:", err)
		os.Exit(1)
	}
}

func deviceID(i int) string { return fmt.Sprintf("sim-%05d", i) }

func setup(args []string) error {
	fs := flag.NewFlagSet("setup", flag.ExitOnError)
	dsn := fs.String("db", "", "inventory database")
	n := fs.Int("devices", 10000, "simulated devices")
	keys := fs.String("keys", "", "file to write the devices' private keys to")
	workers := fs.Int("workers", 8, "parallel registrations")
	_ = fs.Parse(args)
	db, err := inventory.Open(*dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	out, err := os.OpenFile(*keys, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer out.Close()
	w := bufio.NewWriter(out)
	ks := make([]*ecdsa.PrivateKey, *n)
	for i := range ks {
		if ks[i], err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return err
		}
		raw, err := ks[i].Bytes()
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s %x\n", deviceID(i), raw)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	start := time.Now()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range *workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				der, _ := x509.MarshalPKIXPublicKey(&ks[i].PublicKey)
				p := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Headers: map[string]string{"Identity": "file"}, Bytes: der})
				if _, _, err := db.AddDevice(context.Background(), deviceID(i), p, inventory.AddOptions{}); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		return errs[0]
	}
	fmt.Fprintf(os.Stderr, "registered %d devices in %s\n", *n, time.Since(start).Round(time.Millisecond))
	tok, _, err := db.CreateToken(context.Background(), fmt.Sprintf("bench-%d", time.Now().UnixNano()), inventory.RoleOperator)
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

type simDevice struct {
	id  string
	key *ecdsa.PrivateKey
}

func loadKeys(path string) ([]simDevice, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []simDevice
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		id, d, ok := strings.Cut(line, " ")
		raw, err := hex.DecodeString(d)
		if !ok || err != nil {
			return nil, fmt.Errorf("%s: bad line %q", path, line)
		}
		k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, id, err)
		}
		out = append(out, simDevice{id: id, key: k})
	}
	return out, nil
}

// counting counts the bytes of every connection of a transport.
type counting struct{ read, written atomic.Int64 }

type countConn struct {
	net.Conn
	c *counting
}

func (c countConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.c.read.Add(int64(n))
	return n, err
}

func (c countConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.c.written.Add(int64(n))
	return n, err
}

func client(c *counting, conns int) *http.Client {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, IdleConnTimeout: 5 * time.Minute,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return countConn{conn, c}, nil
		},
	}}
}

// get fetches url and returns the status (the body is read and dropped).
func get(hc *http.Client, url string) (int, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, nil
}

// report sends one signed device manifest.
func report(hc *http.Client, base string, d simDevice, hardware string) error {
	resp, err := hc.Get(base + manifests.NoncePath)
	if err != nil {
		return err
	}
	var nr manifests.NonceResponse
	err = json.NewDecoder(resp.Body).Decode(&nr)
	resp.Body.Close()
	if err != nil {
		return fmt.Errorf("nonce: %w", err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	m := &manifests.DeviceManifest{Schema: 1, DeviceID: d.id, Hardware: hardware, RunningSlot: "A", Counter: 1,
		Slots: map[string]manifests.SlotReport{
			"A": {Status: manifests.SlotGood, Image: manifests.Image{Version: "1.0.0", Counter: 1, SHA256: strings.Repeat("ab", 32), Length: 1 << 20}},
			"B": {Status: manifests.SlotUnknown},
		},
		Attempts: []manifests.InstallResult{{At: now.Add(-time.Hour), Target: "acme-gw-v2/1.0.0/firmware.img", Version: "1.0.0", Outcome: manifests.OutcomeConfirmed}},
		Time:     now, Nonce: nr.Nonce}
	env, err := manifests.SignDeviceManifest(m, d.key)
	if err != nil {
		return err
	}
	resp, err = hc.Post(base+manifests.ManifestPath, "application/json", bytes.NewReader(env))
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("report %s: %d %s", d.id, resp.StatusCode, body)
	}
	return nil
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) { l.mu.Lock(); l.d = append(l.d, d); l.mu.Unlock() }

func (l *latencies) pct(p float64) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.d) == 0 {
		return 0
	}
	s := slices.Clone(l.d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

func (l *latencies) n() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.d) }

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	base := fs.String("url", "", "fwrepo serve URL")
	keys := fs.String("keys", "", "the devices' keys (benchfleet setup)")
	token := fs.String("token", "", "operator token")
	target := fs.String("target", "", "release to roll out (a target path)")
	hardware := fs.String("hardware", "acme-gw-v2", "the devices' hardware ID")
	poll := fs.Duration("poll", 60*time.Second, "poll interval of every device")
	duration := fs.Duration("duration", 60*time.Second, "how long to poll")
	reportEvery := fs.Duration("report-every", 10*time.Minute, "signed report interval of every device (fwagent's default is 6h)")
	inflight := fs.Int("inflight", 512, "polls in flight at most (the generator's bound)")
	label := fs.String("label", "", "label printed with the figures")
	pid := fs.Int("server-pid", 0, "fwrepo's process ID: its CPU time per wave and per poll is printed too (from /proc)")
	_ = fs.Parse(args)
	devs, err := loadKeys(*keys)
	if err != nil {
		return err
	}
	n := len(devs)
	// 1. Every device reports once (the inventory learns its hardware).
	var rc counting
	rhc := client(&rc, 64)
	var rlat latencies
	start := time.Now()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		rerr atomic.Pointer[error]
	)
	for range 32 {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := report(rhc, *base, devs[i], *hardware); err != nil {
					rerr.Store(&err)
					return
				}
				rlat.add(time.Since(t0))
			}
		})
	}
	wg.Wait()
	if e := rerr.Load(); e != nil {
		return *e
	}
	fmt.Printf("%s initial reports: %d signed reports in %s (p99 %s, %.0f/s)\n", *label, n, time.Since(start).Round(time.Millisecond),
		ms(rlat.pct(0.99)), float64(n)/time.Since(start).Seconds())

	// 2. A one-wave rollout of all devices: the start call signs and
	// publishes every device's director metadata before it returns.
	api := func(path string, body any) (time.Duration, error) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", *base+"/api/v1/fleet/"+path, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+*token)
		t0 := time.Now()
		resp, err := (&http.Client{Timeout: 10 * time.Minute}).Do(req)
		if err != nil {
			return 0, err
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return 0, fmt.Errorf("POST %s: %d %s", path, resp.StatusCode, out)
		}
		return time.Since(t0), nil
	}
	id := fmt.Sprintf("bench-%d", time.Now().Unix())
	if _, err := api("rollouts", map[string]any{"id": id, "target": *target, "waves": []map[string]int{{"count": n}}, "success_threshold": 1}); err != nil {
		return err
	}
	cpu0 := cpuTime(*pid)
	took, err := api("rollouts/"+id+"/start", nil)
	if err != nil {
		return err
	}
	waveCPU := cpuTime(*pid) - cpu0
	var pc counting
	phc := client(&pc, *inflight)
	if code, err := get(phc, *base+"/"+manifests.DirectorDevice(devs[n-1].id)+"/timestamp.json"); err != nil || code != 200 {
		return fmt.Errorf("director timestamp of %s after the wave start: %d %v", devs[n-1].id, code, err)
	}
	fmt.Printf("%s wave start: %d devices assigned (director metadata signed and published) in %s (goal <= 10 s)", *label, n, took.Round(time.Millisecond))
	if *pid > 0 {
		fmt.Printf("; fwrepo CPU %.1f s", waveCPU.Seconds())
	}
	fmt.Println()
	pc.read.Store(0)
	pc.written.Store(0)

	// 3. Polling at n / poll, reports on top.
	var (
		plat, rl latencies
		reqs     atomic.Int64
		fails    atomic.Int64
		late     atomic.Int64
		sem      = make(chan struct{}, *inflight)
	)
	ctx, cancel := context.WithTimeout(context.Background(), *duration)
	defer cancel()
	interval := *poll / time.Duration(n)
	rinterval := *reportEvery / time.Duration(n)
	var pwg sync.WaitGroup
	go func() { // reports
		t := time.NewTicker(rinterval)
		defer t.Stop()
		for k := 0; ; k++ {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			d := devs[(k*7919)%n]
			pwg.Go(func() {
				t0 := time.Now()
				if err := report(rhc, *base, d, *hardware); err != nil {
					fails.Add(1)
					return
				}
				rl.add(time.Since(t0))
			})
		}
	}()
	polls := 0
	cpu0 = cpuTime(*pid)
	t := time.NewTicker(interval)
	begin := time.Now()
loop:
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
		}
		d := devs[k%n]
		select {
		case sem <- struct{}{}:
		default:
			late.Add(1)
			continue
		}
		polls++
		pwg.Go(func() {
			defer func() { <-sem }()
			t0 := time.Now()
			// As fwagent polls (agent/tufclient): each timestamp, and
			// the root probe only when the server's root hint is
			// missing or above the trusted root (1).
			for _, md := range []string{*base + "/metadata", *base + "/" + manifests.DirectorDevice(d.id)} {
				resp, err := phc.Get(md + "/timestamp.json")
				reqs.Add(1)
				if err != nil {
					fails.Add(1)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fails.Add(1)
					return
				}
				if h := resp.Header.Get(manifests.RootVersionHeader); h == "" || h != "1" {
					code, err := get(phc, md+"/2.root.json")
					reqs.Add(1)
					if err != nil || code != 200 && code != 404 {
						fails.Add(1)
						return
					}
				}
			}
			plat.add(time.Since(t0))
		})
	}
	t.Stop()
	pwg.Wait()
	pollCPU := cpuTime(*pid) - cpu0
	el := time.Since(begin)
	np := plat.n()
	fmt.Printf("%s polls: %d in %s (%.0f/s, %d devices every %s), failed %d, skipped at the generator's bound %d\n", *label, np, el.Round(time.Second),
		float64(np)/el.Seconds(), n, *poll, fails.Load(), late.Load())
	fmt.Printf("%s per poll: p50 %s, p99 %s (goal p99 <= 50 ms); %.1f requests, %.0f bytes (%.0f received, %.0f sent) (goal <= 2 requests, <= 4096 bytes)\n", *label,
		ms(plat.pct(0.5)), ms(plat.pct(0.99)), float64(reqs.Load())/float64(max(np, 1)),
		float64(pc.read.Load()+pc.written.Load())/float64(max(np, 1)), float64(pc.read.Load())/float64(max(np, 1)), float64(pc.written.Load())/float64(max(np, 1)))
	fmt.Printf("%s signed reports during polling: %d (p99 %s)\n", *label, rl.n(), ms(rl.pct(0.99)))
	fmt.Printf("%s machine while polling: %s\n", *label, machine())
	if *pid > 0 {
		fmt.Printf("%s fwrepo CPU while polling: %.2f s in %s (%.0f%% of its core), %.2f ms per poll with the reports' share\n", *label, pollCPU.Seconds(),
			el.Round(time.Second), 100*pollCPU.Seconds()/el.Seconds(), float64(pollCPU.Microseconds())/1000/float64(max(np, 1)))
	}
	_ = polls
	return nil
}

// cpuTime is the user and system CPU time of process pid (0 without one),
// from /proc/PID/stat (clock ticks of 10 ms: USER_HZ is 100 on Linux).
func cpuTime(pid int) time.Duration {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	var ticks int64
	for _, v := range f[11:13] { // utime, stime (fields 14 and 15)
		var n int64
		fmt.Sscan(v, &n)
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}

// machine describes how busy the host was: the load average and the CPU
// pressure (the share of time some runnable task waited for a CPU), which
// bound what latencies on it can show.
func machine() string {
	out := "load average"
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			out += " " + strings.Join(f[:3], " ")
		}
	}
	if b, err := os.ReadFile("/proc/pressure/cpu"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "avg60="); ok {
				out += ", CPU pressure " + v + "% (a runnable task waited for a CPU that share of the last minute)"
			}
		}
	}
	return out
}
