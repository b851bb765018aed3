package dynamodb

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/veltrixdb/veltrix/pkg/auth"
	"github.com/veltrixdb/veltrix/pkg/topology"
)

// tableOps are the operations of this file.
var tableOps = map[string]opFunc{
	"CreateTable":        createTable,
	"DescribeTable":      describeTable,
	"ListTables":         listTables,
	"DeleteTable":        deleteTable,
	"UpdateTable":        updateTable,
	"UpdateTimeToLive":   updateTimeToLive,
	"DescribeTimeToLive": describeTimeToLive,
	"DescribeLimits":     describeLimits,
}

// Billing modes as DynamoDB names them.
const (
	billingPayPerRequest = "PAY_PER_REQUEST"
	billingProvisioned   = "PROVISIONED"
)

type keySchemaElement struct {
	AttributeName string `json:"AttributeName"`
	KeyType       string `json:"KeyType"`
}

type attributeDefinition struct {
	AttributeName string `json:"AttributeName"`
	AttributeType string `json:"AttributeType"`
}

type provisionedThroughput struct {
	ReadCapacityUnits  *int64 `json:"ReadCapacityUnits,omitempty"`
	WriteCapacityUnits *int64 `json:"WriteCapacityUnits,omitempty"`
}

type streamSpecification struct {
	StreamEnabled  bool   `json:"StreamEnabled"`
	StreamViewType string `json:"StreamViewType,omitempty"`
}

type sseSpecification struct {
	Enabled *bool `json:"Enabled,omitempty"`
}

// indexSpec is only decoded to name the refused index.
type indexSpec struct {
	IndexName string `json:"IndexName"`
}

type createTableInput struct {
	TableName                 string                 `json:"TableName"`
	KeySchema                 []keySchemaElement     `json:"KeySchema"`
	AttributeDefinitions      []attributeDefinition  `json:"AttributeDefinitions"`
	BillingMode               string                 `json:"BillingMode"`
	ProvisionedThroughput     *provisionedThroughput `json:"ProvisionedThroughput"`
	GlobalSecondaryIndexes    []indexSpec            `json:"GlobalSecondaryIndexes"`
	LocalSecondaryIndexes     []indexSpec            `json:"LocalSecondaryIndexes"`
	StreamSpecification       *streamSpecification   `json:"StreamSpecification"`
	SSESpecification          *sseSpecification      `json:"SSESpecification"`
	Tags                      []struct{ Key string } `json:"Tags"`
	DeletionProtectionEnabled bool                   `json:"DeletionProtectionEnabled"`
	TableClass                string                 `json:"TableClass"`
}

type billingModeSummary struct {
	BillingMode string `json:"BillingMode"`
}

type throughputDescription struct {
	ReadCapacityUnits      uint64 `json:"ReadCapacityUnits"`
	WriteCapacityUnits     uint64 `json:"WriteCapacityUnits"`
	NumberOfDecreasesToday int    `json:"NumberOfDecreasesToday"`
}

// tableDescription is DynamoDB's TableDescription.
type tableDescription struct {
	TableName                 string                `json:"TableName"`
	TableStatus               string                `json:"TableStatus"`
	TableArn                  string                `json:"TableArn"`
	TableId                   string                `json:"TableId"`
	KeySchema                 []keySchemaElement    `json:"KeySchema"`
	AttributeDefinitions      []attributeDefinition `json:"AttributeDefinitions"`
	CreationDateTime          float64               `json:"CreationDateTime"`
	ItemCount                 int64                 `json:"ItemCount"`
	TableSizeBytes            int64                 `json:"TableSizeBytes"`
	BillingModeSummary        billingModeSummary    `json:"BillingModeSummary"`
	ProvisionedThroughput     throughputDescription `json:"ProvisionedThroughput"`
	DeletionProtectionEnabled bool                  `json:"DeletionProtectionEnabled"`
}

// describe is t's TableDescription with status. ItemCount and
// TableSizeBytes are 0 here; DescribeTable fills in estimates (estimate.go).
func (h *Handler) describe(t topology.Table, status string) tableDescription {
	d := tableDescription{
		TableName: t.Name, TableStatus: status, TableArn: h.arn(t.Name),
		TableId:            fmt.Sprintf("00000000-0000-0000-0000-%012x", t.ID&(1<<48-1)),
		CreationDateTime:   float64(t.CreateTime.UnixMilli()) / 1000,
		BillingModeSummary: billingModeSummary{BillingMode: billingPayPerRequest},
	}
	if t.BillingMode == billingProvisioned {
		d.BillingModeSummary.BillingMode = billingProvisioned
		d.ProvisionedThroughput.ReadCapacityUnits = t.ReadCapacityUnits
		d.ProvisionedThroughput.WriteCapacityUnits = t.WriteCapacityUnits
	}
	if ks := t.KeySchema; ks != nil {
		d.KeySchema = append(d.KeySchema, keySchemaElement{AttributeName: ks.PartitionKey.Name, KeyType: "HASH"})
		d.AttributeDefinitions = append(d.AttributeDefinitions, attributeDefinition{AttributeName: ks.PartitionKey.Name, AttributeType: ks.PartitionKey.Type})
		if ks.SortKey != nil && ks.SortKey.Name != "" {
			d.KeySchema = append(d.KeySchema, keySchemaElement{AttributeName: ks.SortKey.Name, KeyType: "RANGE"})
			d.AttributeDefinitions = append(d.AttributeDefinitions, attributeDefinition{AttributeName: ks.SortKey.Name, AttributeType: ks.SortKey.Type})
		}
	}
	return d
}

// checkTableName validates a TableName parameter as DynamoDB does.
func checkTableName(name string) error {
	if name == "" {
		return validationf("1 validation error detected: Value null at 'tableName' failed to satisfy constraint: Member must not be null")
	}
	if err := topology.ValidateTableName(name); err != nil {
		return validationf("1 validation error detected: Value '%s' at 'tableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 3 and 255", name)
	}
	return nil
}

// checkThroughput validates ProvisionedThroughput's units.
func checkThroughput(pt *provisionedThroughput) error {
	if pt.ReadCapacityUnits == nil || pt.WriteCapacityUnits == nil {
		return validationf("One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
	}
	for _, u := range []struct {
		name string
		v    int64
	}{{"readCapacityUnits", *pt.ReadCapacityUnits}, {"writeCapacityUnits", *pt.WriteCapacityUnits}} {
		if u.v < 1 {
			return validationf("1 validation error detected: Value '%d' at 'provisionedThroughput.%s' failed to satisfy constraint: Member must have value greater than or equal to 1", u.v, u.name)
		}
	}
	return nil
}

// billing resolves BillingMode and ProvisionedThroughput into t. mode ""
// is PROVISIONED on CreateTable, as in DynamoDB.
func billing(t *topology.Table, mode string, pt *provisionedThroughput) error {
	switch mode {
	case billingPayPerRequest:
		if pt != nil && (pt.ReadCapacityUnits != nil || pt.WriteCapacityUnits != nil) {
			return validationf("One or more parameter values were invalid: Neither ReadCapacityUnits nor WriteCapacityUnits can be specified when BillingMode is PAY_PER_REQUEST")
		}
		t.BillingMode, t.ReadCapacityUnits, t.WriteCapacityUnits = billingPayPerRequest, 0, 0
	case billingProvisioned:
		if pt == nil {
			return validationf("One or more parameter values were invalid: ReadCapacityUnits and WriteCapacityUnits must both be specified when BillingMode is PROVISIONED")
		}
		if err := checkThroughput(pt); err != nil {
			return err
		}
		t.BillingMode = billingProvisioned
		t.ReadCapacityUnits, t.WriteCapacityUnits = uint64(*pt.ReadCapacityUnits), uint64(*pt.WriteCapacityUnits)
	default:
		return validationf("1 validation error detected: Value '%s' at 'billingMode' failed to satisfy constraint: Member must satisfy enum value set: [PROVISIONED, PAY_PER_REQUEST]", mode)
	}
	return nil
}

// createTableSpec validates a CreateTable request and returns the table.
func createTableSpec(in *createTableInput) (topology.Table, error) {
	if err := checkTableName(in.TableName); err != nil {
		return topology.Table{}, err
	}
	t := topology.Table{Name: in.TableName}
	if len(in.GlobalSecondaryIndexes) > 0 || len(in.LocalSecondaryIndexes) > 0 {
		var names []string
		for _, ix := range in.GlobalSecondaryIndexes {
			names = append(names, "GlobalSecondaryIndexes "+ix.IndexName)
		}
		for _, ix := range in.LocalSecondaryIndexes {
			names = append(names, "LocalSecondaryIndexes "+ix.IndexName)
		}
		return t, validationf("Veltrix does not support secondary indexes yet: CreateTable with %s; create the table without them", strings.Join(names, ", "))
	}
	if in.StreamSpecification != nil && in.StreamSpecification.StreamEnabled {
		return t, validationf("Veltrix does not support DynamoDB Streams on this endpoint yet: CreateTable with StreamSpecification.StreamEnabled true")
	}
	if in.SSESpecification != nil && in.SSESpecification.Enabled != nil && *in.SSESpecification.Enabled {
		return t, validationf("Veltrix does not support SSESpecification (KMS encryption at rest) yet: CreateTable with SSESpecification.Enabled true")
	}
	if len(in.Tags) > 0 {
		return t, validationf("Veltrix does not support tags yet: CreateTable with Tags")
	}
	if in.DeletionProtectionEnabled {
		return t, validationf("Veltrix does not support deletion protection yet: CreateTable with DeletionProtectionEnabled true")
	}
	switch in.TableClass {
	case "", "STANDARD":
	default:
		return t, validationf("Veltrix supports only the STANDARD table class: CreateTable with TableClass %s", in.TableClass)
	}

	ks := in.KeySchema
	switch {
	case len(ks) == 0:
		return t, validationf("1 validation error detected: Value null at 'keySchema' failed to satisfy constraint: Member must not be null")
	case len(ks) > 2:
		return t, validationf("1 validation error detected: Value '%v' at 'keySchema' failed to satisfy constraint: Member must have length less than or equal to 2", ks)
	}
	for i, e := range ks {
		if e.KeyType != "HASH" && e.KeyType != "RANGE" {
			return t, validationf("1 validation error detected: Value '%s' at 'keySchema.%d.member.keyType' failed to satisfy constraint: Member must satisfy enum value set: [HASH, RANGE]", e.KeyType, i+1)
		}
		if e.AttributeName == "" || len(e.AttributeName) > 255 {
			return t, validationf("1 validation error detected: Value '%s' at 'keySchema.%d.member.attributeName' failed to satisfy constraint: Member must have length between 1 and 255", e.AttributeName, i+1)
		}
	}
	if ks[0].KeyType != "HASH" {
		return t, validationf("Invalid KeySchema: The first KeySchemaElement is not a HASH key type")
	}
	if len(ks) == 2 {
		if ks[1].KeyType != "RANGE" {
			return t, validationf("Invalid KeySchema: The second KeySchemaElement is not a RANGE key type")
		}
		if ks[0].AttributeName == ks[1].AttributeName {
			return t, validationf("Invalid KeySchema: Both the Hash Key and the Range Key element in the KeySchema have the same name")
		}
	}
	defs := map[string]string{}
	for i, d := range in.AttributeDefinitions {
		switch d.AttributeType {
		case "S", "N", "B":
		default:
			return t, validationf("1 validation error detected: Value '%s' at 'attributeDefinitions.%d.member.attributeType' failed to satisfy constraint: Member must satisfy enum value set: [B, N, S]", d.AttributeType, i+1)
		}
		if _, dup := defs[d.AttributeName]; dup {
			return t, validationf("Cannot have two attributes with the same name: %s", d.AttributeName)
		}
		defs[d.AttributeName] = d.AttributeType
	}
	var missing []string
	for _, e := range ks {
		if _, ok := defs[e.AttributeName]; !ok {
			missing = append(missing, e.AttributeName)
		}
	}
	if len(missing) > 0 {
		names := sortedNames(defs)
		return t, validationf("One or more parameter values were invalid: Some index key attributes are not defined in AttributeDefinitions. Keys: [%s], AttributeDefinitions: [%s]",
			strings.Join(missing, ", "), strings.Join(names, ", "))
	}
	if len(defs) != len(ks) {
		return t, validationf("One or more parameter values were invalid: Number of attributes in KeySchema does not exactly match number of attributes defined in AttributeDefinitions")
	}
	t.KeySchema = &topology.KeySchema{PartitionKey: topology.KeyAttribute{Name: ks[0].AttributeName, Type: defs[ks[0].AttributeName]}}
	if len(ks) == 2 {
		t.KeySchema.SortKey = &topology.KeyAttribute{Name: ks[1].AttributeName, Type: defs[ks[1].AttributeName]}
	}

	mode := in.BillingMode
	if mode == "" {
		if in.ProvisionedThroughput == nil {
			return t, validationf("No provisioned throughput specified for the table")
		}
		mode = billingProvisioned
	}
	if err := billing(&t, mode, in.ProvisionedThroughput); err != nil {
		return t, err
	}
	return t, nil
}

func createTable(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in createTableInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	t, err := createTableSpec(&in)
	if err != nil {
		return nil, err
	}
	created, err := h.b.CreateTable(ctx, t)
	if err != nil {
		return nil, toError(err).withTable(in.TableName)
	}
	// Tables are usable at once: CreateTable returns once this router
	// routes by the new table.
	return map[string]any{"TableDescription": h.describe(created, "ACTIVE")}, nil
}

type tableNameInput struct {
	TableName string `json:"TableName"`
}

func describeTable(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in tableNameInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	t, err := h.table(in.TableName)
	if err != nil {
		return nil, err
	}
	d := h.describe(t.Table, "ACTIVE")
	d.ItemCount, d.TableSizeBytes = h.estimate(ctx, t)
	return map[string]any{"Table": d}, nil
}

type listTablesInput struct {
	ExclusiveStartTableName string `json:"ExclusiveStartTableName"`
	Limit                   *int   `json:"Limit"`
}

type listTablesOutput struct {
	TableNames             []string `json:"TableNames"`
	LastEvaluatedTableName string   `json:"LastEvaluatedTableName,omitempty"`
}

// listTables lists the tables with a DynamoDB key schema in name order:
// plain key-value tables made through the gRPC API cannot be used through
// this endpoint, so they are not listed; nor are the tables the caller may
// not read (pages are counted over the tables it may read).
func listTables(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in listTablesInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	limit := 100
	if in.Limit != nil {
		if *in.Limit < 1 || *in.Limit > 100 {
			return nil, validationf("1 validation error detected: Value '%d' at 'limit' failed to satisfy constraint: Member must have value between 1 and 100", *in.Limit)
		}
		limit = *in.Limit
	}
	if in.ExclusiveStartTableName != "" {
		if err := checkTableName(in.ExclusiveStartTableName); err != nil {
			return nil, validationf("1 validation error detected: Value '%s' at 'exclusiveStartTableName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9_.-]+ and have length between 3 and 255", in.ExclusiveStartTableName)
		}
	}
	v, err := h.b.View()
	if err != nil {
		return nil, err
	}
	subj, _ := auth.SubjectFrom(ctx) // none: nothing is readable
	var names []string
	for name, t := range v.Snapshot.Tables {
		if t.KeySchema == nil || t.KeySchema.PartitionKey.Name == "" || name <= in.ExclusiveStartTableName ||
			!subj.Allows(name, auth.Read) {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	out := listTablesOutput{TableNames: []string{}}
	if len(names) > limit {
		names = names[:limit]
		out.LastEvaluatedTableName = names[limit-1]
	}
	out.TableNames = append(out.TableNames, names...)
	return out, nil
}

func deleteTable(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in tableNameInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if _, err := h.table(in.TableName); err != nil {
		return nil, err
	}
	t, err := h.b.DeleteTable(ctx, in.TableName)
	if err != nil {
		return nil, toError(err).withTable(in.TableName)
	}
	return map[string]any{"TableDescription": h.describe(t, "DELETING")}, nil
}

type updateTableInput struct {
	TableName                   string                 `json:"TableName"`
	BillingMode                 string                 `json:"BillingMode"`
	ProvisionedThroughput       *provisionedThroughput `json:"ProvisionedThroughput"`
	AttributeDefinitions        []attributeDefinition  `json:"AttributeDefinitions"`
	GlobalSecondaryIndexUpdates []any                  `json:"GlobalSecondaryIndexUpdates"`
	StreamSpecification         *streamSpecification   `json:"StreamSpecification"`
	SSESpecification            *sseSpecification      `json:"SSESpecification"`
	ReplicaUpdates              []any                  `json:"ReplicaUpdates"`
	DeletionProtectionEnabled   *bool                  `json:"DeletionProtectionEnabled"`
	TableClass                  string                 `json:"TableClass"`
}

// updateTable records BillingMode and ProvisionedThroughput; everything
// else DynamoDB's UpdateTable changes is refused.
func updateTable(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in updateTableInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	if _, err := h.table(in.TableName); err != nil {
		return nil, err
	}
	switch {
	case len(in.GlobalSecondaryIndexUpdates) > 0 || len(in.AttributeDefinitions) > 0:
		return nil, validationf("Veltrix does not support secondary indexes yet: UpdateTable with GlobalSecondaryIndexUpdates or AttributeDefinitions")
	case in.StreamSpecification != nil && in.StreamSpecification.StreamEnabled:
		return nil, validationf("Veltrix does not support DynamoDB Streams on this endpoint yet: UpdateTable with StreamSpecification.StreamEnabled true")
	case in.SSESpecification != nil && in.SSESpecification.Enabled != nil && *in.SSESpecification.Enabled:
		return nil, validationf("Veltrix does not support SSESpecification (KMS encryption at rest) yet: UpdateTable with SSESpecification.Enabled true")
	case len(in.ReplicaUpdates) > 0:
		return nil, validationf("Veltrix does not support global table replicas: UpdateTable with ReplicaUpdates")
	case in.DeletionProtectionEnabled != nil && *in.DeletionProtectionEnabled:
		return nil, validationf("Veltrix does not support deletion protection yet: UpdateTable with DeletionProtectionEnabled true")
	case in.TableClass != "" && in.TableClass != "STANDARD":
		return nil, validationf("Veltrix supports only the STANDARD table class: UpdateTable with TableClass %s", in.TableClass)
	case in.BillingMode == "" && in.ProvisionedThroughput == nil && in.StreamSpecification == nil && in.SSESpecification == nil &&
		in.DeletionProtectionEnabled == nil && in.TableClass == "":
		return nil, validationf("At least one of ProvisionedThroughput, BillingMode, UpdateStreamEnabled, GlobalSecondaryIndexUpdates or SSESpecification or ReplicaUpdates is required")
	}
	t, err := h.b.UpdateTable(ctx, in.TableName, func(t *topology.Table) error {
		mode := in.BillingMode
		if mode == "" {
			if in.ProvisionedThroughput == nil {
				return nil
			}
			mode = t.BillingMode
			if mode == "" {
				mode = billingPayPerRequest
			}
		}
		if mode == billingPayPerRequest && in.BillingMode == "" && in.ProvisionedThroughput != nil {
			return validationf("One or more parameter values were invalid: ProvisionedThroughput cannot be specified for a table whose BillingMode is PAY_PER_REQUEST; set BillingMode PROVISIONED with it")
		}
		return billing(t, mode, in.ProvisionedThroughput)
	})
	if err != nil {
		return nil, toError(err).withTable(in.TableName)
	}
	return map[string]any{"TableDescription": h.describe(t, "ACTIVE")}, nil
}

type ttlSpecification struct {
	Enabled       *bool  `json:"Enabled"`
	AttributeName string `json:"AttributeName"`
}

type updateTTLInput struct {
	TableName               string            `json:"TableName"`
	TimeToLiveSpecification *ttlSpecification `json:"TimeToLiveSpecification"`
}

// updateTimeToLive sets or clears the table's TTL attribute, which drives
// every later write's expiry (items written before keep theirs: see
// docs/design.md).
func updateTimeToLive(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in updateTTLInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	spec := in.TimeToLiveSpecification
	switch {
	case spec == nil:
		return nil, validationf("1 validation error detected: Value null at 'timeToLiveSpecification' failed to satisfy constraint: Member must not be null")
	case spec.Enabled == nil:
		return nil, validationf("1 validation error detected: Value null at 'timeToLiveSpecification.enabled' failed to satisfy constraint: Member must not be null")
	case spec.AttributeName == "" || len(spec.AttributeName) > 255:
		return nil, validationf("1 validation error detected: Value '%s' at 'timeToLiveSpecification.attributeName' failed to satisfy constraint: Member must have length between 1 and 255", spec.AttributeName)
	}
	if _, err := h.table(in.TableName); err != nil {
		return nil, err
	}
	_, err := h.b.UpdateTable(ctx, in.TableName, func(t *topology.Table) error {
		switch {
		case *spec.Enabled && t.TTLAttribute != "":
			return validationf("TimeToLive is already enabled")
		case !*spec.Enabled && t.TTLAttribute == "":
			return validationf("TimeToLive is already disabled")
		case !*spec.Enabled && t.TTLAttribute != spec.AttributeName:
			return validationf("TimeToLive is active on a different AttributeName: current AttributeName is %s", t.TTLAttribute)
		}
		if *spec.Enabled {
			t.TTLAttribute = spec.AttributeName
		} else {
			t.TTLAttribute = ""
		}
		return nil
	})
	if err != nil {
		return nil, toError(err).withTable(in.TableName)
	}
	return map[string]any{"TimeToLiveSpecification": spec}, nil
}

func describeTimeToLive(ctx context.Context, h *Handler, body []byte) (any, error) {
	var in tableNameInput
	if err := decode(body, &in); err != nil {
		return nil, err
	}
	t, err := h.table(in.TableName)
	if err != nil {
		return nil, err
	}
	d := map[string]string{"TimeToLiveStatus": "DISABLED"}
	if t.TTLAttribute != "" {
		d = map[string]string{"TimeToLiveStatus": "ENABLED", "AttributeName": t.TTLAttribute}
	}
	return map[string]any{"TimeToLiveDescription": d}, nil
}

// describeLimits reports DynamoDB's default account limits: Veltrix
// enforces none of them, and tools (the AWS CLI, NoSQL Workbench) ask.
func describeLimits(ctx context.Context, h *Handler, body []byte) (any, error) {
	return map[string]int{
		"AccountMaxReadCapacityUnits": 80000, "AccountMaxWriteCapacityUnits": 80000,
		"TableMaxReadCapacityUnits": 40000, "TableMaxWriteCapacityUnits": 40000,
	}, nil
}

// withTable names the table in a ResourceNotFoundException or
// ResourceInUseException.
func (e *Error) withTable(name string) *Error {
	switch e.Type {
	case "ResourceNotFoundException":
		return notFoundf("Requested resource not found: Table: %s not found", name)
	case "ResourceInUseException":
		return inUsef("Table already exists: %s", name)
	}
	return e
}
