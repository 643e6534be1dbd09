// Package membership is the worker's membership of the service: its entry in
// presence_workers, renewed by beats, lapsing with the bucket's TTL when the
// beats stop; the fence that ends a worker's upstream subscriptions before
// its entry can lapse; the live workers and who owns which agent among them;
// and the agents' claims in presence_claims, taken only when free or their
// holder's lease ended and given up by revision. It is in the style of
// Consul's api/lock.go: one loop renews, a timer of its own fences, and the
// holder hears of the changes as events. It knows the buckets only through
// Store and ClaimStore, so that it is tested without NATS.
package membership
