package siptest

import "testing"

// ModifyPublish changes what an earlier PUBLISH (named by its SIP-ETag) says,
// as a client does when its user's state changes; a new PUBLISH would add a
// second publication that Kamailio merges with the first. It returns the new
// SIP-ETag.
func (k *Kamailio) ModifyPublish(t testing.TB, presentity, etag, body string, expires int) string {
	t.Helper()
	return k.publish(t, presentity, etag, body, expires)
}
