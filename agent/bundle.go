package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/fwctl/fwctl/agent/tuf"
	"github.com/fwctl/fwctl/manifests"
	"github.com/fwctl/fwctl/manifests/bundle"
)

// OfflineConfig is the device's freshness policy for offline bundles
// (docs/offline.md), set at provisioning.
type OfflineConfig struct {
	// MaxMetadataAge accepts bundle metadata (every role) that expired at
	// most this long ago: expiry is judged at now minus this age. Zero, the
	// default, judges it at now, exactly as online: an expired timestamp is
	// refused.
	MaxMetadataAge Duration `json:"max_metadata_age,omitempty"`
}

// ErrBundle means the bundle itself could not be read (not the metadata
// inside it, which is refused as online).
var ErrBundle = errors.New("cannot read the offline bundle")

// bundleHost is the URL host of an offline bundle: the TUF client fetches
// from it exactly as from a repository, and bundleTransport answers.
const bundleHost = "fwbundle.invalid"

// UpdateFrom installs from the offline bundle at path (a bundle file, a
// bundle directory, or a mount point holding one) with exactly the
// verification of an online update: the same TUF client, root chain from
// the pinned root, policy, transparency and A/B install. Only where the
// bytes come from differs, and the freshness policy (cfg.Offline).
func (a *Agent) UpdateFrom(ctx context.Context, path string, opt UpdateOptions) (*UpdateResult, error) {
	b, err := bundle.Open(path, bundle.DefaultLimits)
	if err != nil {
		return nil, fmt.Errorf("%w: %w: %w", ErrRefused, ErrBundle, err)
	}
	defer b.Close()
	a.log.Info("installing from an offline bundle", "bundle", b.Path, "releases", strings.Join(b.Manifest.Releases, ","))
	c := a.client
	mu, tu, hc, rate := c.MetadataURL, c.TargetsURL, c.HTTP, c.Rate
	defer func() { c.MetadataURL, c.TargetsURL, c.HTTP, c.Rate, a.metadataGrace = mu, tu, hc, rate, 0 }()
	c.MetadataURL, c.TargetsURL = "http://"+bundleHost+"/metadata", "http://"+bundleHost+"/targets"
	c.HTTP = &http.Client{Transport: bundleTransport{b}}
	a.metadataGrace = time.Duration(a.cfg.Offline.MaxMetadataAge)
	if d := a.cfg.Director; d != nil {
		// A director device installs only what its director assigns: the
		// bundle must carry this device's signed director metadata.
		id, err := a.DirectorDeviceID(ctx)
		if err != nil {
			return nil, err
		}
		if f, err := b.Open(manifests.DirectorDevice(id) + "/timestamp.json"); err != nil {
			return nil, fmt.Errorf("%w: %w: %s carries no director metadata for device %s, and this device installs only what its director assigns: write the bundle with fwctl bundle --device %s", ErrRefused, ErrBundle, b.Path, id, id)
		} else {
			f.Close()
		}
		u := d.URL
		defer func() { d.URL = u }()
		d.URL = "http://" + bundleHost
	}
	res, err := a.Update(ctx, opt)
	if err != nil && errors.Is(err, tuf.ErrFreeze) {
		knob := "the device accepts no expired metadata (offline.max_metadata_age is not set)"
		if a.metadataGrace > 0 {
			knob = fmt.Sprintf("it expired more than offline.max_metadata_age (%s) ago", a.metadataGrace)
		}
		return nil, fmt.Errorf("%w; bundle %s: %s. Write a bundle from the current repository (its timestamp must be fresh), or provision the device with a longer offline.max_metadata_age", err, b.Path, knob)
	}
	if err != nil && errors.Is(err, ErrNetwork) {
		// Nothing is unreachable on a stick: a file the metadata needs is
		// missing from the bundle.
		return nil, fmt.Errorf("%w: %w: %s lacks a file the signed metadata needs (%v): write the bundle again with fwctl bundle", ErrRefused, ErrBundle, b.Path, err)
	}
	return res, err
}

// bundleTransport serves a bundle's entries as a repository would, with
// Range for resumed downloads. It never trusts a length: the TUF client
// bounds every read by signed lengths and its caps, as online.
type bundleTransport struct{ b *bundle.Bundle }

func (t bundleTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res := &http.Response{Request: req, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1, Header: http.Header{}, Body: http.NoBody}
	status := func(code int) (*http.Response, error) {
		res.StatusCode, res.Status = code, strconv.Itoa(code)+" "+http.StatusText(code)
		return res, nil
	}
	if req.URL.Host != bundleHost || req.Method != http.MethodGet {
		return status(http.StatusBadRequest)
	}
	name, err := url.PathUnescape(strings.TrimPrefix(req.URL.EscapedPath(), "/"))
	if err != nil {
		return status(http.StatusBadRequest)
	}
	if strings.HasPrefix(name, "director/devices/") && strings.HasSuffix(name, ".root.json") {
		name = manifests.DirectorRoot + "/" + path.Base(name) // one root chain for all devices, as fwrepo serves it
	}
	f, err := t.b.Open(name)
	if errors.Is(err, bundle.ErrNotFound) || errors.Is(err, bundle.ErrBadName) {
		return status(http.StatusNotFound)
	}
	if err != nil {
		return nil, err
	}
	var off int64
	if r := req.Header.Get("Range"); r != "" {
		v, ok := strings.CutPrefix(r, "bytes=")
		v, ok2 := strings.CutSuffix(v, "-")
		n, err := strconv.ParseInt(v, 10, 64)
		if !ok || !ok2 || err != nil || n < 0 {
			f.Close()
			return status(http.StatusBadRequest)
		}
		if n >= f.Size {
			f.Close()
			return status(http.StatusRequestedRangeNotSatisfiable)
		}
		if _, err := f.Seek(n, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		off = n
		res.Header.Set("Content-Range", "bytes "+strconv.FormatInt(n, 10)+"-"+strconv.FormatInt(f.Size-1, 10)+"/"+strconv.FormatInt(f.Size, 10))
	}
	res.ContentLength = f.Size - off
	res.Body = struct {
		io.Reader
		io.Closer
	}{f, f}
	if off > 0 {
		return status(http.StatusPartialContent)
	}
	return status(http.StatusOK)
}
