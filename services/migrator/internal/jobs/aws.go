package jobs

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/dynamodbstreams"
	"github.com/aws/aws-sdk-go-v2/service/kinesis"
	migratorv1 "github.com/veltrixdb/veltrix/proto/gen/veltrix/migrator/v1"
	"github.com/veltrixdb/veltrix/services/migrator/internal/awsconf"
)

// LoadAWSConfig loads the SDK configuration from o's region, profile and
// credentials file, else the default credential chain (awsconf.Load).
func LoadAWSConfig(ctx context.Context, o *migratorv1.AwsOptions) (aws.Config, error) {
	return awsconf.Load(ctx, AWSConfOptions(o))
}

// AWSConfOptions maps the API's AwsOptions to awsconf's.
func AWSConfOptions(o *migratorv1.AwsOptions) awsconf.Options {
	return awsconf.Options{Region: o.GetRegion(), Profile: o.GetProfile(), CredentialsFile: o.GetCredentialsFile()}
}

// endpoint returns o's endpoint override, or nil for the SDK's own.
func endpoint(o *migratorv1.AwsOptions) *string {
	if ep := o.GetEndpoint(); ep != "" {
		return aws.String(ep)
	}
	return nil
}

func (e *Env) kinesisClient(ctx context.Context, o *migratorv1.AwsOptions) (*kinesis.Client, error) {
	cfg, err := e.callerRetriedConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	return kinesis.NewFromConfig(cfg, func(ko *kinesis.Options) { ko.BaseEndpoint = endpoint(o) }), nil
}

func (e *Env) streamsClient(ctx context.Context, o *migratorv1.AwsOptions) (*dynamodbstreams.Client, error) {
	cfg, err := e.callerRetriedConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	return dynamodbstreams.NewFromConfig(cfg, func(so *dynamodbstreams.Options) { so.BaseEndpoint = endpoint(o) }), nil
}

func (e *Env) dynamoDBClient(ctx context.Context, o *migratorv1.AwsOptions) (*dynamodb.Client, error) {
	cfg, err := e.callerRetriedConfig(ctx, o)
	if err != nil {
		return nil, err
	}
	return dynamodb.NewFromConfig(cfg, func(do *dynamodb.Options) { do.BaseEndpoint = endpoint(o) }), nil
}

// callerRetriedConfig is e.AWSConfig with one attempt per call
// (awsconf.CallerRetries), whatever the loader (or a test's) set: it is
// the configuration of every client of stream and table-scan jobs. The
// CDC consumer and the Scan are the one retry policy of their calls
// (backoff, throttling, expired iterators) and report every failure to
// the job's health; the SDK's retryer under them would multiply each
// failure and hide it for seconds.
func (e *Env) callerRetriedConfig(ctx context.Context, o *migratorv1.AwsOptions) (aws.Config, error) {
	cfg, err := e.AWSConfig(ctx, o)
	if err != nil {
		return aws.Config{}, err
	}
	return awsconf.WithRetries(cfg, awsconf.CallerRetries), nil
}
