package fwagentcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/fwctl/fwctl/agent"
	"github.com/fwctl/fwctl/internal/cli"
)

// Short help of the commands in this file, shared by whichever command
// framework registers them.
const (
	reportShort   = "Send a signed device manifest (slots, versions, last result) to fwrepo"
	identityShort = "Print the device ID and the public key to register with 'fwrepo devices add'"
	reportLong    = `Fetches a fresh nonce from fwrepo, builds the device manifest from the agent's
state (running and next slot, each slot's image, security counter, last install
result), signs it with the TPM device key and posts it. The device must be
registered first: 'fwagent identity --pem > device.pem' on the device, then
'fwrepo devices add DEVICE_ID --pubkey device.pem' on the server. Exit 3: fwrepo
refused it (unregistered device, bad signature or nonce); 4: unreachable.

--to DIR writes the same signed manifest, with no nonce and the next report
sequence number, into DIR as DEVICE-SEQ.json (no network): on an offline site
the operator carries it out and runs 'fwrepo reports import' (docs/offline.md).`
)

// deviceKey returns the device identity key: the file key when the config
// sets identity.key_file, else the TPM device key. A device with neither
// cannot sign.
func (a *app) deviceKey(ctx context.Context, ag *agent.Agent, cfg *agent.Config) (agent.DeviceSigner, error) {
	k, _, err := a.identityKey(ctx, ag, cfg)
	return k, err
}

func (a *app) identityKey(ctx context.Context, ag *agent.Agent, cfg *agent.Config) (agent.DeviceSigner, string, error) {
	if ag.IdentityKind() == "" {
		return nil, "", cli.WithCode(cli.ExitUsage, fmt.Errorf(
			"this device has no identity key: trust.type is %q and there is no identity.key_file; set \"trust\": {\"type\": \"tpm\", \"device\": \"/dev/tpmrm0\"} or \"identity\": {\"key_file\": \"/var/lib/fwagent/identity.key\"} in %s and run 'fwagent provision'",
			cfg.Trust.Type, a.config))
	}
	k, kind, err := ag.IdentityKey(ctx)
	if errors.Is(err, agent.ErrIdentityPermissions) {
		return nil, kind, cli.WithCode(cli.ExitUsage, err)
	}
	if err != nil {
		return nil, kind, code(fmt.Errorf("%w (run 'fwagent provision' to create the device key)", err))
	}
	return k, kind, nil
}

// runReport implements 'fwagent report [--to DIR]'.
func (a *app) runReport(to string) error {
	ag, cfg, err := a.load(slog.LevelWarn)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	key, err := a.deviceKey(ctx, ag, cfg)
	if err != nil {
		return err
	}
	var opt agent.ReportOptions
	if cfg.Report != nil {
		opt.DeviceID = cfg.Report.DeviceID // as the daemon does
	}
	if to != "" {
		res, path, err := ag.ReportTo(ctx, key, opt, to)
		if err != nil {
			return code(err)
		}
		return a.out.Result(struct {
			*agent.ReportResult
			Path string `json:"path"`
		}{res, path}, func(w io.Writer) {
			fmt.Fprintf(w, "Wrote report %d of device %s to %s\n", res.Manifest.Seq, res.DeviceID, path)
		})
	}
	res, err := ag.Report(ctx, key, opt)
	if errors.Is(err, agent.ErrReportRefused) {
		return cli.WithCode(cli.ExitRefused, err)
	}
	if err != nil {
		return code(err)
	}
	return a.out.Result(res, func(w io.Writer) {
		m := res.Manifest
		run := m.Running()
		fmt.Fprintf(w, "Reported to %s as device %s\n", res.Repository, res.DeviceID)
		fmt.Fprintf(w, "running slot %s: %s (counter %d), security counter %d\n", m.RunningSlot, orUnknown(run.Version), run.Counter, m.Counter)
		if m.LastResult != nil {
			fmt.Fprintf(w, "last result: %s %s\n", m.LastResult.Outcome, m.LastResult.Version)
		}
	})
}

func orUnknown(v string) string {
	if v == "" {
		return "unknown version"
	}
	return v
}

// Identity is what 'fwagent identity' prints.
type Identity struct {
	DeviceID     string `json:"device_id"`
	KeyID        string `json:"key_id"`
	PublicKeyPEM string `json:"public_key"`
	// Kind is "tpm" or "file" (weaker: the key is a file anyone with the
	// disk can copy); the PEM carries it as an "Identity:" header.
	Kind string `json:"kind"`
}

// runIdentity implements 'fwagent identity [--pem]'.
func (a *app) runIdentity(pemOnly bool) error {
	ag, cfg, err := a.load(slog.LevelWarn)
	if err != nil {
		return err
	}
	key, kind, err := a.identityKey(context.Background(), ag, cfg)
	if err != nil {
		return err
	}
	pemBytes, err := agent.IdentityPEM(key, kind)
	if err != nil {
		return err
	}
	id := Identity{DeviceID: key.KeyID(), KeyID: key.KeyID(), PublicKeyPEM: string(pemBytes), Kind: kind}
	if pemOnly && !a.json {
		_, err := io.WriteString(a.out.Out, id.PublicKeyPEM)
		return err
	}
	return a.out.Result(id, func(w io.Writer) {
		fmt.Fprintf(w, "device ID  %s\nidentity   %s\n%s", id.DeviceID, identityStrength(id.Kind), id.PublicKeyPEM)
		fmt.Fprintf(w, "Register it on the server: fwrepo devices add %s --pubkey device.pem\n", id.DeviceID)
	})
}

// identityStrength describes an identity kind for people.
func identityStrength(kind string) string {
	switch kind {
	case agent.IdentityTPM:
		return "tpm (hardware key, never exported)"
	case agent.IdentityFile:
		return "file (weaker: a key file anyone with the disk can copy)"
	}
	return "none"
}
