// Package awsconf builds the AWS SDK configuration of every migrator source
// (S3 exports, DynamoDB Scan, DynamoDB Streams, Kinesis), so credentials are
// chosen one way: from a job's profile and credentials file when it names
// them, else from the default credential chain (environment, shared config,
// SSO, instance role).
//
// A job carries only references — a profile name and a file path on the
// migrator's host (a mounted Kubernetes secret, ~/.aws/credentials) — never
// a secret, so nothing secret is stored in etcd with the job.
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
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
)

// ErrCredentials reports a profile or credentials file that cannot be
// used; use errors.Is.
var ErrCredentials = errors.New("awsconf: unusable AWS credentials reference")

// DefaultRegion is the region when neither the options nor the
// environment name one.
const DefaultRegion = "us-east-1"

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

// Load returns the SDK configuration for o. HTTP responses must start
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
	return cfg, nil
}
