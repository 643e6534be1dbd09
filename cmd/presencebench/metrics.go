package main

import (
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/contactcenter/presence-provider/ops"
	"github.com/contactcenter/presence-provider/worker"
)

// metricsCost measures the input path without the operating features and
// with them as presenced runs them (PRESENCE_HTTP_LISTEN set): the worker
// counting into ops.Metrics and every event kept in presence_history. The
// change throughput and the latency of single inputs, each on a fresh
// provider, in alternating rounds so that the machine's drift weighs on
// both alike. It prints the medians.
func metricsCost(inputs, samples, rounds int) error {
	type figures struct {
		rate     []float64
		p50, p99 []time.Duration
	}
	var off, on figures
	for round := range rounds {
		for _, with := range []bool{false, true} {
			var obs worker.Observer
			f := &off
			if with {
				obs, f = ops.NewMetrics(), &on
			}
			took, lat, err := measureInputs(obs, with, inputs, samples)
			if err != nil {
				return err
			}
			f.rate = append(f.rate, float64(inputs)/took.Seconds())
			fmt.Printf("  round %d, metrics and history %-5v: %.0f inputs/s, latency p50 %s\n", round+1, with, f.rate[round], percentile(lat, 0.50))
			f.p50 = append(f.p50, percentile(lat, 0.50))
			f.p99 = append(f.p99, percentile(lat, 0.99))
		}
	}
	fmt.Printf("metrics and history cost on the input path, median of %d alternating rounds on fresh providers:\n", rounds)
	for _, row := range []struct {
		name string
		f    figures
	}{{"without metrics and history", off}, {"with metrics and history   ", on}} {
		fmt.Printf("  %s: %.0f inputs/s (%d inputs over %d agents); latency p50 %s, p99 %s (%d samples)\n",
			row.name, median(row.f.rate), inputs, changeAgents, median(row.f.p50), median(row.f.p99), samples)
	}
	fmt.Printf("  throughput with / without: %.3f; latency p50 %.3f, p99 %.3f\n", median(on.rate)/median(off.rate),
		float64(median(on.p50))/float64(median(off.p50)), float64(median(on.p99))/float64(median(off.p99)))
	return nil
}

// measureInputs runs a provider whose worker obs observes (nil: none), with
// or without history, and measures the change throughput and the
// single-input latencies on it.
func measureInputs(obs worker.Observer, history bool, inputs, samples int) (time.Duration, []time.Duration, error) {
	dir, err := os.MkdirTemp("", "presencebench-metrics")
	if err != nil {
		return 0, nil, err
	}
	defer os.RemoveAll(dir)
	p, err := start(dir, obs, history)
	if err != nil {
		return 0, nil, err
	}
	defer p.stop()
	took, err := inputsShown(p, "m", inputs)
	if err != nil {
		return 0, nil, err
	}
	lat, err := latencies(p, samples)
	return took, lat, err
}

func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
