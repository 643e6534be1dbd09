package config

// HostWorkerID exposes hostID to the tests.
var HostWorkerID = hostID
