// Package fwrepocli is the fwrepo command line: serving a published
// repository and re-signing its timestamp with the online key.
package fwrepocli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/internal/cli/cobragroups"
	"github.com/fwctl/fwctl/internal/cobracli"
	"github.com/fwctl/fwctl/internal/duration"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/online"
	"github.com/fwctl/fwctl/repo/server"
	"github.com/fwctl/fwctl/signer"
)

// PassphraseEnv holds the online timestamp key's passphrase.
const PassphraseEnv = signer.OnlinePassphraseEnv

// Main runs fwrepo with os.Args and returns the exit code.
func Main() int {
	var jsonOut bool
	root := &cobra.Command{
		Use:           "fwrepo",
		Short:         "Serve a published fwctl repository to devices",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().BoolVar(&jsonOut, "json", false, "JSON logs and output")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return cli.WithCode(cli.ExitUsage, err) })
	root.AddCommand(serveCmd(&jsonOut), devicesCmd(&jsonOut))
	for _, f := range extraCommands { // register.go
		root.AddCommand(f(&jsonOut))
	}
	cobracli.Install(root) // version, --version, __docs (last: documents every command)
	// An unknown subcommand of a group exits 2, not 0 with help.
	cobragroups.Strict(root)
	root.SetArgs(os.Args[1:])
	if err := root.Execute(); err != nil {
		return cli.Std(jsonOut).Fail(err)
	}
	return 0
}

func serveCmd(jsonOut *bool) *cobra.Command {
	var (
		dir, addr, tsKey string
		trustedRoot      string
		dbPath           string
		s3Endpoint       string
		tsLifetime       time.Duration
		tsMaxAge         time.Duration
		lim              server.Limits
		cacheBytes       int64
		revalidate       time.Duration
		accessLog        bool
	)
	c := &cobra.Command{
		Use:   "serve",
		Short: "Serve metadata and targets over HTTP; re-sign timestamp.json before it expires",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logHandler := func(w io.Writer) slog.Handler {
				if *jsonOut {
					return slog.NewJSONHandler(w, nil)
				}
				return slog.NewTextHandler(w, nil)
			}
			log := slog.New(logHandler(os.Stderr))
			accessOut := newFlushWriter(os.Stderr, 100*time.Millisecond)
			defer accessOut.Close()
			if dir == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--dir is required"))
			}
			store, err := blob.Open(dir, blob.Options{S3Endpoint: s3Endpoint, Log: log})
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			srv, err := server.New(server.Options{Store: store, Logger: log, AccessLogger: slog.New(logHandler(accessOut)),
				TimestampMaxAge: tsMaxAge, CacheBytes: cacheBytes, Revalidate: revalidate, NoAccessLog: !accessLog})
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if tsKey == "" {
				warnNoResign(ctx, log, store, time.Now()) // tswarn.go
			}
			if tsKey != "" {
				ot := &online.Timestamp{Store: store, KeyURI: tsKey, Lifetime: tsLifetime, Log: log,
					Options: signer.Options{Passphrase: signer.PassphraseSource(PassphraseEnv, "Timestamp key passphrase: ", false)}}
				if trustedRoot != "" {
					if ot.TrustedRoot, err = os.ReadFile(trustedRoot); err != nil {
						return cli.WithCode(cli.ExitUsage, fmt.Errorf("--root: %w", err))
					}
				}
				if err := ot.Reload("start"); err != nil {
					if errors.Is(err, online.ErrKeyNotAuthorised) || errors.Is(err, online.ErrRefused) {
						return cli.WithCode(cli.ExitUsage, err)
					}
					return err
				}
				var lastErr atomic.Pointer[error]
				srv.SetHealthCheck(func() error {
					if e := lastErr.Load(); e != nil {
						return *e
					}
					return nil
				})
				hup := make(chan os.Signal, 1)
				signal.Notify(hup, syscall.SIGHUP)
				loopDone := make(chan struct{})
				go func() {
					defer close(loopDone)
					defer ot.Close() // a TPM or PKCS#11 key is held until fwrepo stops
					resignLoop(ctx, log, ot, hup, &lastErr)
				}()
				defer func() {
					signal.Stop(hup)
					stop()
					<-loopDone
				}()
			}
			var handler http.Handler = srv
			if dbPath == "" {
				dbPath = os.Getenv(DBEnv)
			}
			if dbPath != "" {
				var closeDB func() error
				if handler, closeDB, err = withDeviceAPI(dbPath, srv, log); err != nil {
					return err
				}
				defer closeDB()
			}
			for _, m := range serveMounts { // register.go
				h, closeMount, err := m.mount(serveEnv{Ctx: ctx, Dir: dir, Store: store, DB: dbPath, Log: log}, handler)
				if err != nil {
					return fmt.Errorf("%s: %w", m.name, err)
				}
				if closeMount != nil {
					defer closeMount()
				}
				handler = h
			}
			handler = metrics.Wrap(handler) // /metrics, and counts every request
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return err
			}
			log.Info("serving", "dir", dir, "addr", ln.Addr().String(), "online_timestamp", tsKey != "",
				"max_connections", lim.MaxConns, "min_send_rate", lim.MinSendRate, "send_window", lim.SendWindow.String(), "cache_bytes", cacheBytes)
			fmt.Fprintf(cmd.OutOrStdout(), "fwrepo serving %s on http://%s\n", dir, ln.Addr())
			lim.Log = log
			err = server.Run(ctx, ln, handler, lim)
			log.Info("stopped")
			return err
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "published repository (fwctl publish --out): a directory or s3://BUCKET/PREFIX (credentials from $AWS_ACCESS_KEY_ID, $AWS_SECRET_ACCESS_KEY)")
	c.Flags().StringVar(&s3Endpoint, "s3-endpoint", "", "S3 API endpoint for an s3:// --dir, e.g. http://127.0.0.1:7070 (default $AWS_ENDPOINT_URL, else AWS)")
	c.Flags().StringVar(&addr, "addr", "127.0.0.1:8080", "listen address")
	c.Flags().StringVar(&dbPath, "db", "", "inventory database, an SQLite file (created 0600) or PostgreSQL (a postgres:// URL or host=… dbname=… string): enables the device API (/api/v1/nonce, /api/v1/manifests); see 'fwrepo devices' (default $"+DBEnv+", which keeps a password off the command line)")
	c.Flags().StringVar(&tsKey, "timestamp-key", "", "online timestamp key: a key file or key URI (file:PATH, pkcs11:…, tpm:DEVICE?handle=…); enables re-signing (passphrase in $"+PassphraseEnv+"); re-opened on SIGHUP, when the file changes, or when a new root revokes it")
	c.Flags().StringVar(&trustedRoot, "root", "", "trusted root metadata (the 1.root.json devices are provisioned with) the repository's root chain must verify from before any timestamp is re-signed (default: the repository's own 1.root.json as read at start)")
	tsLifetime = 24 * time.Hour
	c.Flags().Var(duration.Flag{D: &tsLifetime}, "timestamp-lifetime", "lifetime of re-signed timestamps; re-signed when less than half is left")
	tsMaxAge = 10 * time.Second
	c.Flags().Var(duration.Flag{D: &tsMaxAge}, "timestamp-max-age", "Cache-Control max-age for timestamp.json")
	c.Flags().IntVar(&lim.MaxConns, "max-connections", server.DefaultMaxConns, "open connections at most; at the cap new ones wait in the listen queue (logged); keep it below the file descriptor limit, at about half")
	c.Flags().Int64Var(&lim.MinSendRate, "min-send-rate", server.DefaultMinSendRate, "bytes per second a client must take, measured over --send-window of waiting to write to it; a slower connection is closed (a slow download above this rate is never cut)")
	lim.SendWindow = server.DefaultSendWindow
	c.Flags().Var(duration.Flag{D: &lim.SendWindow}, "send-window", "window over which --min-send-rate is measured")
	c.Flags().Int64Var(&cacheBytes, "cache-bytes", server.DefaultCacheBytes, "metadata kept in memory, in bytes (one shared copy per file; files over 16 MiB or this size are streamed)")
	c.Flags().BoolVar(&accessLog, "access-log", true, "log one line per request")
	for _, m := range serveMounts {
		if m.flags != nil {
			m.flags(c.Flags())
		}
	}
	c.Flags().Var(duration.Flag{D: &revalidate}, "revalidate", "serve cached metadata this long before checking the stored file again (default: every request for a directory, so a publish shows at once; 1s for a bucket); e.g. 1s under heavy load")
	return c
}

// resignLoop re-signs timestamp.json whenever less than half its lifetime
// is left or it is not signed by the online key, following a rotated key
// and newly published metadata (ot.Check). SIGHUP re-opens the key at once.
func resignLoop(ctx context.Context, log *slog.Logger, ot *online.Timestamp, hup <-chan os.Signal, lastErr *atomic.Pointer[error]) {
	check := min(max(ot.Lifetime/8, time.Second), time.Minute)
	t := time.NewTicker(check)
	defer t.Stop()
	for {
		res, err := ot.Check()
		metrics.Resign(err == nil && res.Resigned, err)
		if err == nil && res.Resigned {
			log.Info("re-signed timestamp", "version", res.Version, "expires", res.Expires, "keyid", res.KeyID, "reason", res.Reason)
		}
		switch {
		case errors.Is(err, online.ErrRefused):
			log.Error("refusing to re-sign timestamp.json: the repository does not verify; /healthz reports 503 until a valid publish", "err", err)
		case err != nil:
			log.Error("timestamp re-signing failed", "err", err)
		}
		lastErr.Store(&err)
		select {
		case <-ctx.Done():
			return
		case <-hup:
			log.Info("SIGHUP: re-opening the timestamp key and re-reading the repository")
			if err := ot.Reload("SIGHUP"); err != nil {
				log.Error("timestamp key reload failed; keeping the previous key", "err", err)
			}
		case <-t.C:
		}
	}
}
