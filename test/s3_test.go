package test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/fwctl/fwctl/internal/testenv"
	"github.com/fwctl/fwctl/repo/blob"
	"github.com/fwctl/fwctl/repo/server"
	"github.com/fwctl/fwctl/repo/upload"
)

// TestS3Scripts runs testdata/s3/*.txtar against a real S3-compatible
// server (versitygw, scripts/s3.sh): fwctl publishes to the bucket, fwrepo
// serves from it and re-signs its timestamp there, fwagent updates. Each
// script gets its own prefix, $S3_URL, and the AWS_* variables.
func TestS3Scripts(t *testing.T) {
	s3 := testenv.RequireS3(t)
	var n atomic.Int64
	testscript.Run(t, testscript.Params{
		Dir: "testdata/s3",
		Setup: func(env *testscript.Env) error {
			if err := setupScript(env); err != nil {
				return err
			}
			for k, v := range s3.Env {
				env.Setenv(k, v)
			}
			env.Setenv("S3_URL", s3.URL(fmt.Sprintf("script%d/fw", n.Add(1))))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitport": cmdWaitPort,
			"subst":    cmdSubst,
			"mkimage":  cmdMkImage,
			"exitcode": cmdExitCode,
			"s3get":    cmdS3Get,
			"s3tamper": cmdS3Tamper,
		},
	})
}

// s3get NAME FILE: copy NAME from the store at $S3_URL to FILE.
func cmdS3Get(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: s3get NAME FILE")
	}
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		os.Setenv(k, ts.Getenv(k)) // the test process's own S3 client
	}
	st, err := blob.Open(ts.Getenv("S3_URL"), blob.Options{})
	ts.Check(err)
	b, err := blob.ReadAll(context.Background(), st, args[0])
	if neg {
		if err == nil {
			ts.Fatalf("%s exists in %s", args[0], st)
		}
		return
	}
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), b, 0o644))
}

// s3store opens the store at $S3_URL with the script's credentials.
func s3store(ts *testscript.TestScript) blob.Store {
	for _, k := range []string{"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		os.Setenv(k, ts.Getenv(k)) // the test process's own S3 client
	}
	st, err := blob.Open(ts.Getenv("S3_URL"), blob.Options{})
	ts.Check(err)
	return st
}

// s3tamper PREFIX OFFSET: flip the byte at OFFSET of the one object in
// $S3_URL whose name starts with PREFIX, as someone with write access to
// the bucket could.
func cmdS3Tamper(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: s3tamper PREFIX OFFSET")
	}
	off, err := strconv.Atoi(args[1])
	ts.Check(err)
	st := s3store(ts)
	ctx := context.Background()
	files, err := st.List(ctx, args[0])
	ts.Check(err)
	if len(files) != 1 {
		ts.Fatalf("%d objects start with %s in %s, want 1", len(files), args[0], st)
	}
	b, err := blob.ReadAll(ctx, st, files[0].Name)
	ts.Check(err)
	b[off] ^= 0xff
	ts.Check(st.Put(ctx, files[0].Name, bytes.NewReader(b), int64(len(b))))
}

// TestS3ServeRangeETag: fwrepo's server reading a bucket answers Range
// requests, ETag/If-None-Match and cache headers as it does from a
// directory, and a device installs from it.
func TestS3ServeRangeETag(t *testing.T) {
	s3 := testenv.RequireS3(t)
	s3.Setenv(t)
	r := newRelease(t)
	img := r.add("1.0", 1, 300000, "hw1")
	r.publish()
	st, err := blob.Open(s3.URL("fleet"), blob.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := upload.Upload(context.Background(), r.pub, st, "fwctl publish", upload.Options{}); err != nil {
		t.Fatal(err)
	}
	h, err := server.New(server.Options{Store: st, Revalidate: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	files, err := st.List(context.Background(), "targets/")
	if err != nil || len(files) != 1 {
		t.Fatalf("targets in the bucket: %v, %v", files, err)
	}
	get := func(p string, hdr ...string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+p, nil)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	target := "/" + files[0].Name
	resp := get(target, "Range", "bytes=1000-1999")
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, img[1000:2000]) {
		t.Errorf("Range from S3: %d, %d bytes, match %v", resp.StatusCode, len(body), bytes.Equal(body, img[1000:2000]))
	}
	resp = get(target)
	body, _ = io.ReadAll(resp.Body)
	etag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || !bytes.Equal(body, img) || etag == "" || resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("full GET from S3: %d, ETag %q, Cache-Control %q, body matches %v", resp.StatusCode, etag, resp.Header.Get("Cache-Control"), bytes.Equal(body, img))
	}
	if resp := get(target, "If-None-Match", etag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	resp = get("/metadata/timestamp.json")
	tsETag := resp.Header.Get("ETag")
	if resp.StatusCode != 200 || tsETag == "" || resp.Header.Get("Cache-Control") != "public, max-age=10" {
		t.Errorf("timestamp.json from S3: %d, ETag %q, Cache-Control %q", resp.StatusCode, tsETag, resp.Header.Get("Cache-Control"))
	}
	if resp := get("/metadata/timestamp.json", "If-None-Match", tsETag); resp.StatusCode != http.StatusNotModified {
		t.Errorf("timestamp.json If-None-Match: %d, want 304", resp.StatusCode)
	}
	if resp := get("/metadata/9.root.json"); resp.StatusCode != 404 {
		t.Errorf("missing object: %d, want 404", resp.StatusCode)
	}

	d := newDevice(t, srv.URL, "hw1")
	d.provision(r.rootJSON())
	d.mustInstall(img)
}
