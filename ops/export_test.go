package ops

// MaxStreams is how many status page streams run at once.
const MaxStreams = maxStreams
