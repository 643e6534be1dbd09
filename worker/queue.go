package worker

// queue is the throttle's waiting line: restores (subscriptions the server
// ended) go before first subscriptions, each line first in, first out. Keys
// stay in line after their agent stops waiting; the dispatcher skips them.
type queue struct {
	restore, fresh []string
}

func (q *queue) push(key string, restore bool) {
	if restore {
		q.restore = append(q.restore, key)
	} else {
		q.fresh = append(q.fresh, key)
	}
}

func (q *queue) pop() (string, bool) {
	for _, line := range []*[]string{&q.restore, &q.fresh} {
		if len(*line) > 0 {
			key := (*line)[0]
			(*line)[0] = ""
			*line = (*line)[1:]
			return key, true
		}
	}
	return "", false
}
