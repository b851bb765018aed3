package export

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/veltrixdb/veltrix/services/migrator/internal/awsconf"
)

// Store reads the objects of one export folder: the manifests and the data
// files, by their path relative to the folder (manifest-summary.json,
// data/abc.json.gz).
type Store interface {
	// Open opens the object name. When ifMatch is set the object must still
	// have that ETag (S3 only; a local store ignores it), so two reads of one
	// object see the same bytes. A missing object is an error wrapping
	// ErrNotExist.
	Open(ctx context.Context, name, ifMatch string) (*Object, error)
	// String names the store for messages (s3://bucket/prefix or a path).
	String() string
}

// Object is an open object.
type Object struct {
	// Body is the object's bytes; close it.
	Body io.ReadCloser
	// Size is the object's length in bytes, -1 when unknown.
	Size int64
	// ETag is the object's entity tag (S3), "" for local files.
	ETag string
}

// AWSOptions says how to reach S3.
type AWSOptions struct {
	// Region; default from the environment, else us-east-1.
	Region string
	// Profile and CredentialsFile choose the credentials (see
	// awsconf.Options); default the default credential chain.
	Profile         string
	CredentialsFile string
	// Endpoint overrides the S3 endpoint URL (MinIO, gofakes3, s3rver).
	Endpoint string
	// PathStyle uses path-style addressing (http://host/bucket/key).
	PathStyle bool
}

// OpenStore opens the export folder at uri: s3://bucket/prefix, file:///dir
// or a plain directory path. S3 credentials come from the default
// credential chain (environment, shared config, SSO, IMDS, ...).
func OpenStore(ctx context.Context, uri string, o AWSOptions) (Store, error) {
	switch {
	case strings.HasPrefix(uri, "s3://"):
		u, err := url.Parse(uri)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("%w: %q: want s3://bucket/prefix", ErrBadURI, uri)
		}
		client, err := NewS3Client(ctx, o)
		if err != nil {
			return nil, err
		}
		return NewS3Store(client, u.Host, strings.TrimPrefix(u.Path, "/")), nil
	case strings.HasPrefix(uri, "file://"):
		u, err := url.Parse(uri)
		if err != nil || (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("%w: %q: want file:///absolute/dir", ErrBadURI, uri)
		}
		return NewDirStore(u.Path)
	case strings.Contains(uri, "://"):
		return nil, fmt.Errorf("%w: %q: want s3://bucket/prefix, file:///dir or a directory path", ErrBadURI, uri)
	case uri == "":
		return nil, fmt.Errorf("%w: empty", ErrBadURI)
	}
	return NewDirStore(uri)
}

// NewS3Client builds an S3 client from o's credentials (awsconf.Load),
// with the SDK's standard retryer (awsconf.SDKRetries), the one retry of
// its calls: a GetObject that fails after it is ErrRetried, which the
// import does not retry again (it only resumes a read broken mid-object,
// which the SDK cannot retry).
// Request and response checksums are computed only when S3 requires them,
// which keeps S3-compatible servers that predate the SDK's default CRC
// trailers (gofakes3, older MinIO) working.
func NewS3Client(ctx context.Context, o AWSOptions) (*s3.Client, error) {
	cfg, err := awsconf.Load(ctx, awsconf.Options{Region: o.Region, Profile: o.Profile, CredentialsFile: o.CredentialsFile})
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		so.UsePathStyle = o.PathStyle
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		so.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	}), nil
}

// S3Store reads an export folder in S3.
type S3Store struct {
	client *s3.Client
	bucket string
	prefix string // "" or ending in "/"
}

// NewS3Store reads the folder prefix of bucket.
func NewS3Store(client *s3.Client, bucket, prefix string) *S3Store {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &S3Store{client: client, bucket: bucket, prefix: prefix}
}

func (s *S3Store) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Open implements Store.
func (s *S3Store) Open(ctx context.Context, name, ifMatch string) (*Object, error) {
	in := &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: aws.String(s.prefix + name)}
	if ifMatch != "" {
		in.IfMatch = aws.String(ifMatch)
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		var nsk *s3types.NoSuchKey
		var re *smithyhttp.ResponseError
		if errors.As(err, &nsk) || (errors.As(err, &re) && re.HTTPStatusCode() == http.StatusNotFound) {
			return nil, fmt.Errorf("%w: s3://%s/%s%s", ErrNotExist, s.bucket, s.prefix, name)
		}
		if errors.As(err, &re) && re.HTTPStatusCode() == http.StatusPreconditionFailed {
			return nil, fmt.Errorf("export: s3://%s/%s%s changed while being read (ETag no longer %s): %w", s.bucket, s.prefix, name, ifMatch, err)
		}
		return nil, retriedError{fmt.Errorf("export: get s3://%s/%s%s: %w", s.bucket, s.prefix, name, err)}
	}
	size := int64(-1)
	if out.ContentLength != nil {
		size = *out.ContentLength
	}
	return &Object{Body: out.Body, Size: size, ETag: aws.ToString(out.ETag)}, nil
}

// DirStore reads an export folder on disk. Names cannot escape the folder.
type DirStore struct {
	dir  string
	root *os.Root
}

// NewDirStore reads the folder dir.
func NewDirStore(dir string) (*DirStore, error) {
	st, err := os.Stat(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: export folder %s", ErrNotExist, dir)
		}
		return nil, fmt.Errorf("export: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory (want the export folder holding manifest-summary.json)", ErrBadURI, dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return &DirStore{dir: dir, root: root}, nil
}

func (d *DirStore) String() string { return d.dir }

// Open implements Store.
func (d *DirStore) Open(_ context.Context, name, _ string) (*Object, error) {
	if !fs.ValidPath(name) {
		return nil, fmt.Errorf("%w: %q is not a path inside the export folder", ErrBadURI, name)
	}
	f, err := d.root.Open(filepath.FromSlash(name))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s", ErrNotExist, path.Join(d.dir, name))
		}
		return nil, fmt.Errorf("export: %w", err)
	}
	size := int64(-1)
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	return &Object{Body: f, Size: size}, nil
}

// Close releases the folder handle.
func (d *DirStore) Close() error { return d.root.Close() }
