package main

import (
	"context"

	"github.com/contactcenter/presence-provider/schemas"
	"github.com/contactcenter/presence-provider/worker"
)

// explainer answers the status page's explain panel (ops.Explainer) with
// what the worker tells of one agent.
type explainer struct{ w *worker.Worker }

func (e explainer) Explain(ctx context.Context, uri string) (any, error) {
	reply, err := e.w.Get(ctx, schemas.GetRequest{URIs: []string{uri}})
	if err != nil {
		return nil, err
	}
	if r := reply.Agents[0]; r.Error != nil {
		return nil, r.Error
	}
	return reply.Agents[0], nil
}
