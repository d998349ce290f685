package fwrepocli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fwctl/fwctl/internal/cli"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/repo/inventory"
)

// DBEnv names the default inventory database for 'fwrepo devices'.
const DBEnv = "FWREPO_DB"

func defaultDB() string {
	if v := os.Getenv(DBEnv); v != "" {
		return v
	}
	return "fwrepo.db"
}

func devicesCmd(jsonOut *bool) *cobra.Command {
	var dbPath string
	c := &cobra.Command{
		Use:   "devices",
		Short: "Register, list and remove devices: the fleet's installed versions (inventory database)",
		Args:  cobra.NoArgs,
	}
	// The default is resolved when the command runs, not shown by --help:
	// $FWREPO_DB may hold a PostgreSQL password.
	c.PersistentFlags().StringVar(&dbPath, "db", "", "inventory database, shared with 'fwrepo serve --db': an SQLite file or PostgreSQL (a postgres:// URL or host=… dbname=… string) (default $"+DBEnv+", else fwrepo.db)")
	c.AddCommand(devicesAddCmd(jsonOut, &dbPath), devicesListCmd(jsonOut, &dbPath), devicesRemoveCmd(jsonOut, &dbPath),
		devicesTagCmd(jsonOut, &dbPath), devicesUntagCmd(jsonOut, &dbPath), devicesHistoryCmd(jsonOut, &dbPath)) // fleet.go
	return c
}

func openInventory(path string) (*inventory.DB, error) {
	if path == "" {
		path = defaultDB()
	}
	db, err := inventory.Open(path)
	if err != nil {
		return nil, cli.WithCode(cli.ExitUsage, err)
	}
	return db, nil
}

func devicesAddCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	var (
		pubFile string
		replace bool
	)
	c := &cobra.Command{
		Use:   "add [DEVICE_ID] --pubkey FILE",
		Short: "Register a device's public key (from 'fwagent identity --pem'); DEVICE_ID defaults to its key ID",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if pubFile == "" {
				return cli.WithCode(cli.ExitUsage, errors.New("--pubkey is required: the PEM file 'fwagent identity --pem' prints on the device"))
			}
			pemBytes, err := os.ReadFile(pubFile)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, err)
			}
			pub, err := manifests.ParsePublicKeyPEM(pemBytes)
			if err != nil {
				return cli.WithCode(cli.ExitUsage, fmt.Errorf("%s: %w", pubFile, err))
			}
			id, _ := manifests.KeyID(pub)
			if len(args) == 1 {
				id = args[0]
			}
			return withInventory(*dbPath, func(db *inventory.DB) error {
				dev, added, err := db.AddDevice(cmd.Context(), id, pemBytes, inventory.AddOptions{Replace: replace})
				if err != nil {
					return cli.WithCode(cli.ExitUsage, err)
				}
				out := struct {
					*inventory.Device
					Added bool `json:"added"`
				}{dev, added}
				return cli.Std(*jsonOut).Result(out, func(w io.Writer) {
					if added {
						fmt.Fprintf(w, "Registered device %s (key %s)\n", dev.ID, dev.KeyID)
					} else {
						fmt.Fprintf(w, "Device %s is already registered with this key; nothing changed\n", dev.ID)
					}
				})
			})
		},
	}
	c.Flags().StringVar(&pubFile, "pubkey", "", "device public key, PEM (fwagent identity --pem)")
	c.Flags().BoolVar(&replace, "replace", false, "re-register an existing device ID with a new key (replaced TPM)")
	return c
}

// removal is the --json document of 'fwrepo devices remove'.
type removal struct {
	*inventory.Device
	Removed bool `json:"removed"`
}

func devicesRemoveCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	return &cobra.Command{
		Use:   "remove DEVICE_ID",
		Short: "Remove (decommission) a device: its key and last report are deleted and its reports refused",
		Long: `Remove (decommission) a registered device. Its key and latest report are
deleted, and fwrepo serve refuses its reports from then on (403, "removed").
Registering it again with 'fwrepo devices add' puts it back into service.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withInventory(*dbPath, func(db *inventory.DB) error {
				dev, err := db.RemoveDevice(cmd.Context(), args[0])
				if errors.Is(err, inventory.ErrUnknownDevice) {
					return cli.WithCode(cli.ExitUsage, err)
				}
				if err != nil {
					return err
				}
				return cli.Std(*jsonOut).Result(removal{dev, true}, func(w io.Writer) {
					fmt.Fprintf(w, "Removed device %s (key %s); its reports are now refused\n", dev.ID, dev.KeyID)
				})
			})
		},
	}
}

// fleet is the --json document of 'fwrepo devices list': {"devices":
// [...]}, and with --all also "removed": [{"device_id", "key_id",
// "removed_at"}, ...] (an empty list when none were removed). Without
// --all the document is what it always was.
type fleet struct {
	Devices []*inventory.Device         `json:"devices"`
	Removed *[]*inventory.RemovedDevice `json:"removed,omitempty"`
}

func devicesListCmd(jsonOut *bool, dbPath *string) *cobra.Command {
	var all bool
	c := &cobra.Command{
		Use:   "list [--all]",
		Short: "List registered devices with their running version, counter, last result and last report; --all adds removed ones",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withInventory(*dbPath, func(db *inventory.DB) error {
				devs, err := db.List(cmd.Context())
				if err != nil {
					return err
				}
				if devs == nil {
					devs = []*inventory.Device{}
				}
				doc := fleet{Devices: devs}
				if all {
					removed, err := db.ListRemoved(cmd.Context())
					if err != nil {
						return err
					}
					if removed == nil {
						removed = []*inventory.RemovedDevice{}
					}
					doc.Removed = &removed
				}
				return cli.Std(*jsonOut).Result(doc, func(w io.Writer) { printFleet(w, doc) })
			})
		},
	}
	c.Flags().BoolVar(&all, "all", false, "also list removed (decommissioned) devices, with their key and when they were removed")
	return c
}

func printFleet(w io.Writer, f fleet) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	if len(f.Devices) == 0 {
		fmt.Fprintln(tw, "No devices registered; add one with 'fwrepo devices add --pubkey FILE'")
	} else {
		fmt.Fprintln(tw, "DEVICE\tHARDWARE\tRUNNING\tVERSION\tCOUNTER\tLAST RESULT\tLAST SEEN\tIDENTITY\tTAGS")
	}
	for _, d := range f.Devices {
		m := d.Manifest
		if m == nil {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\tnever reported\t%s\t%s\n", d.ID, identityLabel(d.Identity), formatTags(d.Tags))
			continue
		}
		last := "-"
		if r := m.LastResult; r != nil {
			last = r.Outcome + " " + r.Version
		}
		run := m.Running()
		version := run.Version
		if version == "" {
			version = "(factory)"
		}
		fmt.Fprintf(tw, "%s\t%s\tslot %s\t%s\t%d\t%s\t%s\t%s\t%s\n", d.ID, m.Hardware, m.RunningSlot, version, m.Counter, last,
			d.LastSeen.Format(time.RFC3339), identityLabel(d.Identity), formatTags(d.Tags))
	}
	if f.Removed == nil {
		return
	}
	// A second table: removed devices keep no hardware, versions or reports.
	tw.Flush()
	if len(*f.Removed) == 0 {
		fmt.Fprintln(tw, "\nNo removed devices")
		return
	}
	fmt.Fprintln(tw, "\nREMOVED DEVICE\tKEY\tREMOVED AT")
	for _, r := range *f.Removed {
		fmt.Fprintf(tw, "%s\t%s\tremoved %s\n", r.ID, r.KeyID, r.RemovedAt.Format(time.RFC3339))
	}
}

// withDeviceAPI opens the inventory at dbPath and serves its device API
// under /api/ next to the repository handler. The returned func closes it.
func withDeviceAPI(dbPath string, repository http.Handler, log *slog.Logger) (http.Handler, func() error, error) {
	db, err := openInventory(dbPath)
	if err != nil {
		return nil, nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/api/", inventory.Handler(db, log))
	mux.Handle("/", repository)
	log.Info("device API enabled", "db", inventory.RedactDSN(dbPath), "nonce", manifests.NoncePath, "manifests", manifests.ManifestPath)
	return mux, db.Close, nil
}

// withInventory opens the inventory at path (see openInventory), runs f on
// it and closes it: the one open/close of every 'fwrepo devices', 'token'
// and 'rollout' command.
func withInventory(path string, f func(*inventory.DB) error) error {
	db, err := openInventory(path)
	if err != nil {
		return err
	}
	defer db.Close()
	return f(db)
}
