package client

import (
	"context"
	"fmt"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/schemas/history"
)

// HistoryOptions choose which of an agent's past events History returns.
type HistoryOptions = history.Options

// History reads an agent's past events from presence_history, oldest first,
// each once and in seq order (docs/contract.md, History): an event
// published twice (by two workers in a hand-over) is returned once. A UCC
// that missed events while disconnected reads them with AfterSeq set to the
// last seq it saw.
func (c *Client) History(ctx context.Context, uri string, opts HistoryOptions) ([]schemas.HistoryEntry, error) {
	key, err := Key(uri)
	if err != nil {
		return nil, err
	}
	entries, err := history.Read(ctx, c.nc, key, opts)
	if err != nil {
		return nil, fmt.Errorf("client: history of %s: %w", uri, err)
	}
	return entries, nil
}
