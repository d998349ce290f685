package cobracli

import (
	"strings"

	"github.com/spf13/cobra"
)

// examples are the `Example:` sections of fwctl's and fwrepo's commands,
// by command path. They live here, not in each command's file, so that
// they are written once for the help, the man pages and docs/cli/ alike;
// a command that sets its own Example keeps it. TestExamples checks that
// every runnable command has one and that each names a real command.
var examples = map[string]string{
	"fwctl target":   "  fwctl -w ws target add build/fw.img --hardware acme-gw-v2 --version 2.4.1 --counter 17\n  fwctl -w ws target list",
	"fwctl key":      "  fwctl -w ws key rotate timestamp --revoke 9d6968a7… --add file:timestamp-2.json",
	"fwctl ceremony": "  fwctl -w ws ceremony export -o req.json   # then on the air-gapped signer: fwctl ceremony sign req.json …",
	"fwctl delegate": "  fwctl -w ws delegate add vendor-x --paths 'acme-gw-v2/*' --key file:vendor-x.json",
	"fwrepo devices": "  fwrepo devices list --db inventory.db",
	"fwctl init": `  export FWCTL_PASSPHRASE=…   # or type it at the prompt
  fwctl init ws
  fwctl init ws --root-keys 3 --root-threshold 2 --expiry timestamp=12h
  fwctl init ws --key targets=pkcs11:token=release;object=targets`,
	"fwctl target add": `  fwctl -w ws target add build/fw.img --hardware acme-gw-v2 --version 2.4.1 --counter 17
  fwctl -w ws target add build/fw.img --hardware acme-gw-v2 --version 2.4.2 --counter 18 --delta-from 2`,
	"fwctl target list":   `  fwctl -w ws target list`,
	"fwctl target remove": `  fwctl -w ws target remove acme-gw-v2/2.4.1/fw.img`,
	"fwctl publish": `  fwctl -w ws publish --out repo
  fwctl -w ws publish --out s3://fw-bucket/prod --s3-endpoint http://127.0.0.1:7070
  fwctl -w ws --json publish --out repo | jq .versions.targets`,
	"fwctl status": `  fwctl -w ws status`,
	"fwctl verify": `  fwctl verify --root ws/metadata/1.root.json --repo repo
  fwctl verify --root 1.root.json --repo https://updates.example.com`,
	"fwctl check-expiry": `  fwctl -w ws check-expiry --within 30d
  fwctl check-expiry --repo repo --within 12h`,
	"fwctl delta":           `  fwctl delta fw-1.0.0.img fw-1.0.1.img fw-1.0.1.delta`,
	"fwctl audit":           `  fwctl audit --repo repo --root ws/metadata/1.root.json --rekor http://127.0.0.1:3000`,
	"fwctl key generate":    `  fwctl key generate file:new-targets.json`,
	"fwctl key add":         `  fwctl -w ws key add root file:root-2.json`,
	"fwctl key revoke":      `  fwctl -w ws key revoke targets 3f2a9c1d…`,
	"fwctl key rotate":      `  fwctl -w ws key rotate timestamp --revoke 9d6968a7… --add file:timestamp-2.json`,
	"fwctl key threshold":   `  fwctl -w ws key threshold root 2`,
	"fwctl key renew-root":  `  fwctl -w ws key renew-root && fwctl -w ws publish --out repo`,
	"fwctl ceremony export": `  fwctl -w ws ceremony export -o signing-request.json`,
	"fwctl ceremony show":   `  fwctl ceremony show signing-request.json`,
	"fwctl ceremony sign":   `  fwctl ceremony sign signing-request.json --key file:/media/usb/root-1.json -o root-1.sig.json`,
	"fwctl ceremony import": `  fwctl -w ws ceremony import root-1.sig.json root-2.sig.json && fwctl -w ws publish --out repo`,
	"fwctl delegate add":    `  fwctl -w ws delegate add vendor-x --paths 'acme-gw-v2/*' --key file:vendor-x.json`,
	"fwctl delegate bins":   `  fwctl -w ws delegate bins --bits 4 --key file:bins.json`,
	"fwctl delegate target": `  fwctl -w ws delegate target build/fw.img --role vendor-x --hardware acme-gw-v2 --version 2.5.0 --counter 19`,
	"fwrepo serve": `  fwrepo serve --dir repo --addr 127.0.0.1:8080
  FWREPO_PASSPHRASE=… fwrepo serve --dir repo --timestamp-key ws/keys/timestamp-9d6968a7122b28f1.json
  fwrepo serve --dir s3://fw-bucket/prod --db postgres://fwrepo@db/fwrepo`,
	"fwrepo devices add":    `  fwrepo devices add gw-0042 --pubkey gw-0042.pem --db inventory.db`,
	"fwrepo devices list":   `  fwrepo devices list --all --db inventory.db`,
	"fwrepo devices remove": `  fwrepo devices remove gw-0042 --db inventory.db`,
}

// addExamples fills in Example for every command of root's tree that has
// none and is listed above.
func addExamples(root *cobra.Command) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if ex, ok := examples[c.CommandPath()]; ok && c.Example == "" {
			c.Example = strings.TrimRight(ex, "\n")
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(root)
}
