package inventory

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/fwctl/fwctl/manifests"
)

// bodyTimeout bounds reading a device manifest's body.
const bodyTimeout = 30 * time.Second

// Handler serves the device API on manifests.NoncePath (GET) and
// manifests.ManifestPath (POST) and answers 404 elsewhere. Mount it under
// /api/ next to the repository handler.
func Handler(d *DB, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &api{db: d, log: log}
}

type api struct {
	db  *DB
	log *slog.Logger
}

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	status, attrs := a.serve(w, r)
	a.log.Info("request", append([]any{"method", r.Method, "path", r.URL.Path, "status", status,
		"remote", r.RemoteAddr, "duration_ms", time.Since(start).Milliseconds()}, attrs...)...)
}

func (a *api) serve(w http.ResponseWriter, r *http.Request) (int, []any) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.URL.Path {
	case manifests.NoncePath:
		if r.Method != http.MethodGet {
			w.Header().Set("Allow", "GET")
			return reply(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"}), nil
		}
		nonce, exp, err := a.db.Nonce(r.Context())
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrBusy) {
				code = http.StatusServiceUnavailable
				w.Header().Set("Retry-After", "60")
			}
			a.log.Error("issue nonce", "err", err)
			return reply(w, code, map[string]string{"error": "cannot issue a nonce now; retry later"}), []any{"err", err}
		}
		return reply(w, http.StatusOK, manifests.NonceResponse{Nonce: nonce, Expires: exp}), nil
	case manifests.ManifestPath:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			return reply(w, http.StatusMethodNotAllowed, manifests.ReportResponse{Error: "use POST"}), nil
		}
		// The server has no overall read timeout (it would cut long
		// downloads): a report's body must arrive within bodyTimeout.
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, manifests.MaxDeviceManifestSize))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			return reply(w, http.StatusRequestEntityTooLarge, manifests.ReportResponse{
				Error: "device manifest larger than the limit; at most 65536 bytes"}), []any{"err", err}
		case err != nil:
			return reply(w, http.StatusBadRequest, manifests.ReportResponse{Error: "read body: " + err.Error()}), []any{"err", err}
		}
		m, err := a.db.Accept(r.Context(), body)
		if err != nil {
			code := refusalStatus(err)
			if code == http.StatusInternalServerError {
				a.log.Error("store device manifest", "err", err)
				return reply(w, code, manifests.ReportResponse{Error: "internal error storing the manifest; retry later"}), []any{"err", err}
			}
			return reply(w, code, manifests.ReportResponse{Error: err.Error()}), []any{"refused", err}
		}
		return reply(w, http.StatusOK, manifests.ReportResponse{DeviceID: m.DeviceID, Accepted: true}),
			[]any{"device", m.DeviceID, "running_slot", m.RunningSlot, "version", m.Running().Version}
	}
	return reply(w, http.StatusNotFound, map[string]string{"error": "not found"}), nil
}

// refusalStatus maps Accept's refusals to HTTP statuses: 400 for a
// malformed manifest, 403 for an unregistered or removed device, a bad
// signature or a bad nonce.
func refusalStatus(err error) int {
	switch {
	case errors.Is(err, manifests.ErrInvalidDeviceManifest), errors.Is(err, manifests.ErrUnsupportedSchema):
		return http.StatusBadRequest
	case errors.Is(err, ErrUnknownDevice), errors.Is(err, ErrDeviceRemoved), errors.Is(err, manifests.ErrBadSignature), errors.Is(err, ErrNonce):
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func reply(w http.ResponseWriter, code int, v any) int {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return code
}
