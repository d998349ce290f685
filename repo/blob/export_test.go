package blob

// SetListPage makes List ask for at most n keys a page (max-keys), so a
// test sees the continuation of a truncated listing.
func (s *S3) SetListPage(n int) { s.listPage = n }

// Bucket and Endpoint let a test open a second store on the same server.
func (s *S3) Bucket() string   { return s.bucket }
func (s *S3) Endpoint() string { return s.endpoint.String() }
