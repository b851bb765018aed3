package dynamodb

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// boto3Script signs with botocore, a second SigV4 implementation: the
// right secret passes, a wrong one and a missing permission are refused
// with DynamoDB's codes.
const boto3Script = `
import sys
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

url = sys.argv[1]
def client(key, secret):
    return boto3.client("dynamodb", endpoint_url=url, region_name="ap-south-1",
                        aws_access_key_id=key, aws_secret_access_key=secret,
                        config=Config(retries={"max_attempts": 1}))

def code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return "ok"

admin = client("AKADMIN", "admin-secret")
admin.create_table(TableName="alpha", BillingMode="PAY_PER_REQUEST",
                   KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
admin.put_item(TableName="alpha", Item={"pk": {"S": "k  é"}, "v": {"S": "a  b\u2603"}})
got = admin.get_item(TableName="alpha", Key={"pk": {"S": "k  é"}})["Item"]["v"]["S"]
assert got == "a  b\u2603", got
want = [
    (code(lambda: client("AKADMIN", "wrong").list_tables()), "InvalidSignatureException"),
    (code(lambda: client("AKNOBODY", "x").list_tables()), "UnrecognizedClientException"),
    (code(lambda: client("AKREAD", "read-secret").put_item(TableName="alpha", Item={"pk": {"S": "r"}})), "AccessDeniedException"),
    (code(lambda: client("AKREAD", "read-secret").get_item(TableName="alpha", Key={"pk": {"S": "r"}})), "ok"),
]
for got, w in want:
    assert got == w, (got, w)
print("boto3: ok")
`

// TestSigV4Boto3: requests signed by boto3 (botocore) verify.
func TestSigV4Boto3(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err == nil {
		err = exec.Command(py, "-c", "import boto3").Run()
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("python3 with boto3 is missing in CI (make python-deps, which make test runs, installs Debian's python3-boto3): %v", err)
		}
		t.Skipf("needs python3 with boto3 (make python-deps installs Debian's python3-boto3): %v", err)
	}
	a := newAuthEndpoint(t)
	cmd := exec.CommandContext(t.Context(), py, "-c", boto3Script, a.srv.URL)
	// Only the script's own credentials: no profile, config file or
	// environment keys of the machine running the tests.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatal(err)
	}
}
