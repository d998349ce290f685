package fwrepocli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/repo/mirror"
	"github.com/fwctl/fwctl/repo/verify"
)

func init() { registerCommand(mirrorCmd) }

func mirrorCmd(jsonOut *bool) *cobra.Command {
	var upstream, dir, addr, rootFile, dirRootFile, dirUpstream, devicesFile string
	var devices []string
	var interval time.Duration
	c := &cobra.Command{
		Use:   "mirror --upstream URL --dir DIR --root ROOT [--addr 127.0.0.1:8080] [--interval 1m] [--director-root ROOT --director-device ID...]",
		Short: "Serve a site mirror of an upstream repository, verified before it is served",
		Long: `Pull an upstream repository as a TUF client every --interval, verify all
of it from the trusted --root (as a device would: root chain, thresholds,
versions, expiry, every target's length and hash), write a verified state to
DIR whole and only then serve it. When upstream is down or serves anything
that does not verify, the last verified state stays served and the reason is
logged. The mirror holds no keys: it cannot re-sign timestamps, so devices
behind it need upstream's timestamps to stay fresh (or an offline policy,
docs/offline.md). Devices point their repository URL at it unchanged.

With --director-root, the mirror also mirrors the director for the devices
of the site (--director-device, repeated, or --director-devices FILE, one ID
a line): each device's director metadata is verified from the director root
(signatures, thresholds, versions never going back, expiry, and its one
target against the image state served) and served under upstream's
/director/ paths, root hint included. Devices configured for the director
point at the mirror unchanged.`,
		Example: `  fwrepo mirror --upstream https://updates.example.com --dir /var/lib/fwmirror --root 1.root.json --addr 0.0.0.0:8080
  fwrepo mirror --upstream https://updates.example.com --dir /var/lib/fwmirror --root 1.root.json \
    --director-root director-root.json --director-devices /etc/fwmirror/devices.txt`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if upstream == "" || dir == "" || rootFile == "" {
				return errors.New("--upstream, --dir and --root are required")
			}
			root, err := os.ReadFile(rootFile)
			if err != nil {
				return err
			}
			src, err := verify.NewHTTPSource(upstream, verify.HTTPOptions{})
			if err != nil {
				return err
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			m := &mirror.Mirror{Upstream: src, Dir: dir, Root: root, Log: log}
			if devicesFile != "" {
				b, err := os.ReadFile(devicesFile)
				if err != nil {
					return err
				}
				for _, l := range strings.Split(string(b), "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
						devices = append(devices, l)
					}
				}
			}
			switch {
			case dirRootFile != "" && len(devices) == 0:
				return errors.New("--director-root needs the site's devices: --director-device ID or --director-devices FILE")
			case dirRootFile == "" && len(devices) > 0:
				return errors.New("--director-device needs --director-root (the director root the devices are provisioned with)")
			case dirRootFile != "":
				droot, err := os.ReadFile(dirRootFile)
				if err != nil {
					return err
				}
				dsrc := verify.Source(src)
				if dirUpstream != "" {
					if dsrc, err = verify.NewHTTPSource(dirUpstream, verify.HTTPOptions{}); err != nil {
						return err
					}
				}
				m.Director = &mirror.Director{Upstream: dsrc, Root: droot, Devices: devices}
			}
			if err := m.Open(); err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// The first sync runs before the port opens: once it accepts
			// connections, it serves what that sync verified (or the
			// state of the last run when upstream is down).
			if err := m.Sync(ctx); err != nil {
				log.Warn("mirror sync failed; serving the last verified state", "err", err)
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			fmt.Printf("mirror of %s serving on http://%s\n", upstream, ln.Addr())
			go func() {
				select {
				case <-ctx.Done():
					return
				case <-time.After(interval):
				}
				m.Run(ctx, interval)
			}()
			srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
			go func() { <-ctx.Done(); srv.Close() }()
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	c.Flags().StringVar(&upstream, "upstream", "", "upstream repository URL (what devices would use)")
	c.Flags().StringVar(&dir, "dir", "", "directory for the verified states")
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	c.Flags().StringVar(&rootFile, "root", "", "trusted root.json (1.root.json, as provisioned on devices)")
	c.Flags().StringVar(&dirRootFile, "director-root", "", "director root.json the site's devices are provisioned with: mirror the director too")
	c.Flags().StringArrayVar(&devices, "director-device", nil, "device ID of the site whose director metadata to mirror (repeat)")
	c.Flags().StringVar(&devicesFile, "director-devices", "", "file of device IDs, one a line (# comments)")
	c.Flags().StringVar(&dirUpstream, "director-upstream", "", "director URL, when not --upstream")
	c.Flags().DurationVar(&interval, "interval", time.Minute, "how often to pull upstream")
	return c
}
