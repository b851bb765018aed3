package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// uploadS3 copies the export folder dir into bucket under prefix (which
// should end in "/" unless empty), as an export written there by DynamoDB.
func uploadS3(ctx context.Context, client *s3.Client, bucket, prefix, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		key := prefix + strings.ReplaceAll(rel, string(filepath.Separator), "/")
		if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(b)}); err != nil {
			return fmt.Errorf("upload %s to s3://%s/%s: %w", rel, bucket, key, err)
		}
		return nil
	})
}
