package schemas

import "embed"

// JSONSchemas holds the JSON Schema (draft 2020-12) of every message of
// docs/contract.md, one json/<name>.schema.json file each, with $id
// https://contactcenter.example/presence/v1/<name>.schema.json. They are
// embedded so that tests and tools validate the messages the provider really
// sends and stores against the schemas, not against the Go types alone.
//
//go:embed json/*.schema.json
var JSONSchemas embed.FS
