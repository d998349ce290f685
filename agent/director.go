package agent

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/fwctl/fwctl/agent/director"
	"github.com/fwctl/fwctl/agent/policy"
	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/tpm"
)

// DirectorConfig is the "director" object of the config.
type DirectorConfig struct {
	// URL is the fwrepo serving /director/ (default: repository).
	URL string `json:"url,omitempty"`
	// Root is the director's 1.root.json, pinned by 'fwagent provision'.
	Root string `json:"root"`
	// DeviceID names this device to the director (default: the identity
	// key ID, as 'fwagent identity' prints it).
	DeviceID string `json:"device_id,omitempty"`
}

func (c *Config) validateDirector() []error {
	d := c.Director
	if d == nil {
		return nil
	}
	var errs []error
	if d.Root == "" {
		errs = append(errs, errors.New("director.root: missing (the director's 1.root.json from 'fwrepo director init')"))
	}
	if d.DeviceID != "" && !manifests.ValidDeviceID(d.DeviceID) {
		errs = append(errs, fmt.Errorf("director.device_id: %q is not a valid device ID", d.DeviceID))
	}
	return errs
}

// DirectorDeviceID returns the device ID the director knows this device
// by: director.device_id, else the identity key's ID.
func (a *Agent) DirectorDeviceID(ctx context.Context) (string, error) {
	if a.cfg.Director != nil && a.cfg.Director.DeviceID != "" {
		return a.cfg.Director.DeviceID, nil
	}
	k, _, err := a.IdentityKey(ctx)
	if err != nil {
		return "", fmt.Errorf("director: no device_id and no identity key to take it from: %w", err)
	}
	return k.KeyID(), nil
}

func (a *Agent) directorClient(ctx context.Context) (*director.Client, error) {
	id, err := a.DirectorDeviceID(ctx)
	if err != nil {
		return nil, err
	}
	url := a.cfg.Director.URL
	if url == "" {
		url = a.cfg.Repository
	}
	return director.New(url, id, a.cfg.StateDir, a.client), nil
}

// provisionDirector pins the director root named in the config.
func (a *Agent) provisionDirector(ctx context.Context) error {
	if a.cfg.Director == nil {
		return nil
	}
	b, err := os.ReadFile(a.cfg.Director.Root)
	if err != nil {
		return fmt.Errorf("director.root: %w", err)
	}
	// The pin does not depend on the device ID (a TPM identity key may
	// not exist yet at this point of provisioning).
	_, err = director.New(a.cfg.Repository, "", a.cfg.StateDir, a.client).Provision(ctx, b)
	return err
}

// directorPlan asks the director what this device may install and checks
// that the image repository agrees; it narrows p's request to that target,
// or marks the plan "not assigned". A refusal leaves the slots alone.
func (a *Agent) directorPlan(ctx context.Context, p *plan) error {
	if a.cfg.Director == nil {
		return nil
	}
	c, err := a.directorClient(ctx)
	if err != nil {
		return err
	}
	as, err := c.Fetch(ctx, a.Now().Add(-a.metadataGrace)) // grace: a bundle's offline policy only (bundle.go)
	switch {
	case errors.Is(err, director.ErrRefused):
		return fmt.Errorf("%w: director: %w", ErrRefused, err)
	case err != nil:
		return classify(fmt.Errorf("director: %w", err))
	case as == nil:
		p.notAssigned = fmt.Sprintf("not assigned: the director names no release for device %s", c.DeviceID)
		return nil
	}
	if err := a.lookup(p.up, p.tfs, as.Path); err != nil {
		return err
	}
	p.offers = offers(p.tfs)
	if _, err := policy.Agree(p.offers, &policy.Assigned{Path: as.Path, Length: as.Length, Hashes: as.Hashes,
		Hardware: as.Hardware, Counter: as.Counter}, a.cfg.Hardware); err != nil {
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if p.req.Target != "" && p.req.Target != as.Path {
		return fmt.Errorf("%w: the director assigns %s to this device, not %s", ErrRefused, as.Path, p.req.Target)
	}
	p.req.Target = as.Path
	p.assigned = as
	a.log.Info("director assignment agrees with the image repository", "device", c.DeviceID, "target", as.Path,
		"counter", as.Counter, "director_targets_version", as.TargetsVersion)
	return nil
}

// hexHashes returns a target's hashes as hex by algorithm.
func hexHashes(tf *tuf.TargetFile) map[string]string {
	out := make(map[string]string, len(tf.Hashes))
	for alg, h := range tf.Hashes {
		out[alg] = hex.EncodeToString(h)
	}
	return out
}

// tpmIdentity returns the TPM device key when the trust store is a TPM.
func (a *Agent) tpmIdentity(ctx context.Context) (DeviceSigner, error) {
	t, ok := a.trust.(*tpm.TPM)
	if !ok {
		return nil, errors.New("trust.type is not \"tpm\" and the config sets no identity.key_file")
	}
	return t.DeviceKey(ctx)
}
