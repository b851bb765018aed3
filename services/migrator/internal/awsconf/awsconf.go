// Package awsconf builds the AWS SDK configuration of every migrator source
// (S3 exports, DynamoDB Scan, DynamoDB Streams, Kinesis), so credentials are
// chosen one way: from a job's profile and credentials file when it names
// them, else from the default credential chain (environment, shared config,
// SSO, instance role).
//
// A job carries only references — a profile name and a file path on the
// migrator's host (a mounted Kubernetes secret, ~/.aws/credentials) — never
// a secret, so nothing secret is stored in etcd with the job.
//
// It is also the one place that says who retries a failed AWS call
// (WithRetries): the SDK's retryer or the caller's loop, never both.
package awsconf

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
)

// ErrCredentials reports a profile or credentials file that cannot be
// used; use errors.Is.
var ErrCredentials = errors.New("awsconf: unusable AWS credentials reference")

// DefaultRegion is the region when neither the options nor the
// environment name one.
const DefaultRegion = "us-east-1"

// Retries says who retries a failed AWS call.
type Retries int

const (
	// SDKRetries is the SDK's standard retryer with SDKAttempts attempts
	// per call (exponential backoff with jitter, throttling and 5xx
	// retried): for callers with no retry loop of their own (S3 reads of
	// an export).
	SDKRetries Retries = iota
	// CallerRetries is one attempt per call: the caller's loop is the one
	// retry policy (the CDC consumers and the Scan, which back off,
	// handle throttling and report each failure to the job's health), so
	// one failure is one call, not SDKAttempts hidden in the SDK.
	CallerRetries
)

// SDKAttempts is the attempts per call under SDKRetries (the SDK's
// default).
const SDKAttempts = 3

// WithRetries returns cfg with its retryer set for r, overriding any
// retry mode or max attempts from the environment or shared config
// (AWS_MAX_ATTEMPTS would otherwise wrap the retryer again). Every client
// the migrator builds goes through it.
func WithRetries(cfg aws.Config, r Retries) aws.Config {
	cfg.RetryMaxAttempts = 0
	cfg.RetryMode = ""
	switch r {
	case CallerRetries:
		cfg.Retryer = func() aws.Retryer { return aws.NopRetryer{} }
	default:
		cfg.Retryer = func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.MaxAttempts = SDKAttempts })
		}
	}
	return cfg
}

// Options say where a job's AWS configuration comes from.
type Options struct {
	// Region; default from the environment or profile, else us-east-1.
	Region string
	// Profile names a profile of the shared config and credentials files
	// (as AWS_PROFILE does). Default: the environment's credential chain.
	Profile string
	// CredentialsFile is an absolute path of a shared credentials file (INI,
	// as ~/.aws/credentials) read instead of the default one. Without
	// Profile its [default] profile is used, so the file wins over
	// credentials in the migrator's environment.
	CredentialsFile string
}

// Load returns the SDK configuration for o, with SDKRetries (see
// WithRetries for clients whose caller retries). HTTP responses must start
// within 30 s, so a server that accepts connections but never answers
// fails the job instead of hanging it.
func Load(ctx context.Context, o Options) (aws.Config, error) {
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
			tr.ResponseHeaderTimeout = 30 * time.Second
		})),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	profile := o.Profile
	if f := o.CredentialsFile; f != "" {
		if !filepath.IsAbs(f) {
			return aws.Config{}, fmt.Errorf("%w: credentials file %q: want an absolute path on the migrator's host", ErrCredentials, f)
		}
		if _, err := os.Stat(f); err != nil {
			return aws.Config{}, fmt.Errorf("%w: credentials file: %v", ErrCredentials, err)
		}
		opts = append(opts, config.WithSharedCredentialsFiles([]string{f}))
		if profile == "" {
			profile = "default"
		}
	}
	if profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		var missing config.SharedConfigProfileNotExistError
		if errors.As(err, &missing) {
			where := "the shared config and credentials files"
			if o.CredentialsFile != "" {
				where = o.CredentialsFile + " and the shared config file"
			}
			return aws.Config{}, fmt.Errorf("%w: AWS profile %q not found in %s", ErrCredentials, profile, where)
		}
		return aws.Config{}, fmt.Errorf("load AWS config: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	return WithRetries(cfg, SDKRetries), nil
}
