#!/usr/bin/env python3
"""Smoke test of a DynamoDB endpoint with boto3, a second-language client.

Usage: python3 dynamodb_smoke.py ENDPOINT_URL [TABLE]

Creates TABLE (pk S, sk N), then runs put/get/query/update/delete/batch
calls and checks each answer against DynamoDB's documented behaviour. Exits
0 when every check passes, 1 with a message naming the failed check
otherwise. Run by e2e/dynamodb_python_test.go against dynalite and a real
Veltrix cluster.
"""

import decimal
import sys
import time

import boto3
from boto3.dynamodb.conditions import Attr, Key
from botocore.config import Config
from botocore.exceptions import ClientError

failures = []


def check(what, got, want):
    if got != want:
        failures.append(f"{what}: got {got!r}, want {want!r}")
        print(f"FAIL {what}: got {got!r}, want {want!r}", flush=True)
    else:
        print(f"ok   {what}", flush=True)


def error_code(fn):
    try:
        fn()
    except ClientError as e:
        return e.response["Error"]["Code"]
    return None


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    endpoint = sys.argv[1]
    table_name = sys.argv[2] if len(sys.argv) > 2 else "py_smoke"
    cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=20)
    kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="veltrix",
              aws_secret_access_key="veltrix", config=cfg)
    client = boto3.client("dynamodb", **kw)
    ddb = boto3.resource("dynamodb", **kw)

    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": "sk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST")
    deadline = time.time() + 30
    while client.describe_table(TableName=table_name)["Table"]["TableStatus"] != "ACTIVE":
        if time.time() > deadline:
            failures.append("table not ACTIVE after 30s")
            break
        time.sleep(0.05)
    check("list_tables names the table", table_name in client.list_tables()["TableNames"], True)
    table = ddb.Table(table_name)

    # put/get with the resource API (Python types: Decimal, bytes, sets).
    item = {"pk": "user#1", "sk": decimal.Decimal(1), "name": "Ada", "score": decimal.Decimal("12.50"),
            "tags": {"a", "b"}, "blob": b"\x00\x01\xff", "nested": {"items": [1, "two", None, True]},
            "big": decimal.Decimal("12345678901234567890123456789012345678")}
    table.put_item(Item=item)
    got = table.get_item(Key={"pk": "user#1", "sk": 1}, ConsistentRead=True).get("Item")
    want = dict(item)
    want["blob"] = boto3.dynamodb.types.Binary(b"\x00\x01\xff")
    want["nested"] = {"items": [decimal.Decimal(1), "two", None, True]}
    check("get_item returns the item put", got, want)
    check("get_item of a missing item", "Item" in table.get_item(Key={"pk": "user#1", "sk": 99}), False)

    # The low-level client: wire-format attribute values.
    low = client.get_item(TableName=table_name, Key={"pk": {"S": "user#1"}, "sk": {"N": "1"}},
                          ProjectionExpression="#n, score", ExpressionAttributeNames={"#n": "name"})["Item"]
    check("get_item projection (low-level)", low, {"name": {"S": "Ada"}, "score": {"N": "12.5"}})

    # query
    with table.batch_writer() as bw:
        for i in range(2, 13):
            bw.put_item(Item={"pk": "user#1", "sk": i, "v": i * 10})
    r = table.query(KeyConditionExpression=Key("pk").eq("user#1") & Key("sk").between(3, 6))
    check("query BETWEEN 3 AND 6", [int(x["sk"]) for x in r["Items"]], [3, 4, 5, 6])
    r = table.query(KeyConditionExpression=Key("pk").eq("user#1"), ScanIndexForward=False, Limit=3)
    check("query descending Limit 3", [int(x["sk"]) for x in r["Items"]], [12, 11, 10])
    check("query Limit 3 has LastEvaluatedKey", r.get("LastEvaluatedKey"), {"pk": "user#1", "sk": decimal.Decimal(10)})
    seen, start = [], None
    while True:
        args = dict(KeyConditionExpression=Key("pk").eq("user#1"), Limit=5, FilterExpression=Attr("v").gte(50))
        if start:
            args["ExclusiveStartKey"] = start
        r = table.query(**args)
        seen += [int(x["sk"]) for x in r["Items"]]
        start = r.get("LastEvaluatedKey")
        if not start:
            break
    check("query pages with a filter", seen, [5, 6, 7, 8, 9, 10, 11, 12])
    check("query Select COUNT", table.query(KeyConditionExpression=Key("pk").eq("user#1"), Select="COUNT")["Count"], 12)

    # update
    r = table.update_item(Key={"pk": "user#1", "sk": 1},
                          UpdateExpression="SET score = score + :d, visits = if_not_exists(visits, :z) + :one "
                                           "ADD tags :t",
                          ExpressionAttributeValues={":d": decimal.Decimal("0.1"), ":z": 0, ":one": 1, ":t": {"c"}},
                          ReturnValues="UPDATED_NEW")
    check("update_item UPDATED_NEW", r["Attributes"],
          {"score": decimal.Decimal("12.6"), "visits": decimal.Decimal(1), "tags": {"a", "b", "c"},
           })
    r = table.update_item(Key={"pk": "user#1", "sk": 1}, UpdateExpression="REMOVE nested.#i[0], big",
                          ExpressionAttributeNames={"#i": "items"}, ReturnValues="ALL_NEW")
    check("update_item REMOVE ALL_NEW", r["Attributes"].get("nested"), {"items": ["two", None, True]})
    check("update_item REMOVE removed big", "big" in r["Attributes"], False)
    code = error_code(lambda: table.update_item(Key={"pk": "user#1", "sk": 1}, UpdateExpression="SET score = :s",
                                                ConditionExpression=Attr("name").eq("Bob"),
                                                ExpressionAttributeValues={":s": 0}))
    check("update_item with a failing condition", code, "ConditionalCheckFailedException")
    code = error_code(lambda: table.update_item(Key={"pk": "user#1", "sk": 1}, UpdateExpression="SET score = "))
    check("update_item with a syntax error", code, "ValidationException")
    check("the failed updates changed nothing",
          table.get_item(Key={"pk": "user#1", "sk": 1}, ConsistentRead=True)["Item"]["score"], decimal.Decimal("12.6"))

    # delete
    r = table.delete_item(Key={"pk": "user#1", "sk": 2}, ReturnValues="ALL_OLD")
    check("delete_item ALL_OLD", r.get("Attributes"), {"pk": "user#1", "sk": decimal.Decimal(2), "v": decimal.Decimal(20)})
    check("deleted item is gone", "Item" in table.get_item(Key={"pk": "user#1", "sk": 2}, ConsistentRead=True), False)
    code = error_code(lambda: table.delete_item(Key={"pk": "user#1", "sk": 3}, ConditionExpression=Attr("v").eq(0)))
    check("delete_item with a failing condition", code, "ConditionalCheckFailedException")

    # batch get
    r = client.batch_get_item(RequestItems={table_name: {"Keys": [{"pk": {"S": "user#1"}, "sk": {"N": str(i)}} for i in (3, 4, 99)]}})
    check("batch_get_item", sorted(int(x["sk"]["N"]) for x in r["Responses"][table_name]), [3, 4])

    code = error_code(lambda: client.get_item(TableName="py_missing_table", Key={"pk": {"S": "x"}}))
    check("get_item on a missing table", code, "ResourceNotFoundException")

    client.delete_table(TableName=table_name)
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
