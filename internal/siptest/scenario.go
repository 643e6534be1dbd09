package siptest

import (
	"fmt"
	"strings"
	"time"
)

// The scenarios below make sipp a presence server that misbehaves once: the
// FIRST SUBSCRIBE sipp receives (counted across all calls) gets the fault;
// every other SUBSCRIBE, a new subscription or a refresh within a dialog, is
// served normally: 200 echoing Expires, then a NOTIFY
// "active;expires=N" carrying an open PIDF for the request's To URI; an
// Expires of 0 is answered with NOTIFY "terminated;reason=timeout", as
// Kamailio does. A test thus sees both the fault and how the client recovers
// from it, and Sipp.Received("SUBSCRIBE") tells whether it retried.
//
// sipp matches messages to calls by Call-ID, so a retry with a new Call-ID
// is a new call; one with the same Call-ID continues the faulty call, which
// serves it normally (except after a deactivation, rejection or silence,
// which end the dialog: use a new Call-ID, as RFC 6665 says).
//
// Every SUBSCRIBE must carry Expires and a Contact in angle brackets.

// ServeScenario serves every SUBSCRIBE normally (no fault).
func ServeScenario() string {
	return scenario("serve", `<nop next="serve"/>`)
}

// DeactivatedScenario accepts the first subscription, then after the pause
// ends it with NOTIFY "terminated;reason=deactivated", after which RFC 6665
// says the subscriber should subscribe again at once.
func DeactivatedScenario(after time.Duration) string {
	return TerminatedScenario(after, "terminated;reason=deactivated", false)
}

// TerminatedScenario accepts the first subscription, then after the pause
// ends it with a NOTIFY whose Subscription-State is state (such as
// "terminated;reason=probation;retry-after=2"), with an open PIDF when
// withBody is set (RFC 6665 section 4.1.3: the last NOTIFY of an
// invariant resource carries its state).
func TerminatedScenario(after time.Duration, state string, withBody bool) string {
	return scenario(state, accept+
		fmt.Sprintf(`<pause milliseconds="%d"/>`, after.Milliseconds())+"\n"+
		notify(state, withBody)+
		`<recv response="200" next="end"/>`)
}

// SilentNotifierScenario answers the first SUBSCRIBE 200 and never sends
// it a NOTIFY, as linphonec does for a watcher that is not its friend; the
// rest of that dialog (a refresh, the un-SUBSCRIBE) is served normally.
func SilentNotifierScenario() string {
	return scenario("silent notifier", response(200, "OK", "Expires: [$expires]")+`<nop next="subscribe"/>`)
}

// NotifyFirstScenario sends the first subscription's NOTIFY (active, open
// PIDF) before its 200, which RFC 6665 section 4.1.2.4 allows.
func NotifyFirstScenario() string {
	return scenario("NOTIFY before 200", notify("active;expires=[$expires]", true)+
		response(200, "OK", "Expires: [$expires]")+`<recv response="200" next="subscribe"/>`)
}

// AcceptedScenario answers the first SUBSCRIBE 202 Accepted (RFC 3265's
// answer for a subscription not yet authorized; RFC 6665 keeps it valid),
// then NOTIFYs as for a 200.
func AcceptedScenario() string {
	return scenario("202", response(202, "Accepted", "Expires: [$expires]")+
		notify("active;expires=[$expires]", true)+`<recv response="200" next="subscribe"/>`)
}

// ShortNotifyExpiresScenario grants the first SUBSCRIBE what it asked, then
// says in its NOTIFY that the subscription ends in seconds.
func ShortNotifyExpiresScenario(seconds int) string {
	return scenario("NOTIFY shortens", response(200, "OK", "Expires: [$expires]")+
		notify(fmt.Sprintf("active;expires=%d", seconds), true)+`<recv response="200" next="subscribe"/>`)
}

// NoExpiresScenario answers the first SUBSCRIBE 200 without Expires, as
// linphonec does to a refresh; the subscription lasts what was asked.
func NoExpiresScenario() string {
	return scenario("200 without Expires", response(200, "OK", "")+
		notify("active;expires=[$expires]", true)+`<recv response="200" next="subscribe"/>`)
}

// RetryAfterScenario answers the first SUBSCRIBE with 503 Service
// Unavailable and Retry-After: seconds.
func RetryAfterScenario(seconds int) string {
	return scenario("retry-after", responseNext(503, "Service Unavailable", fmt.Sprintf("Retry-After: %d", seconds), "subscribe"))
}

// SilentScenario never answers the first SUBSCRIBE nor anything else in its
// call (retransmissions included), so the client's transaction times out.
func SilentScenario() string {
	return scenario("silent", `<recv request="SUBSCRIBE" next="fault"/>`)
}

// RejectedScenario accepts the first SUBSCRIBE with 200, then ends it at once
// with NOTIFY "terminated;reason=rejected": the subscriber must not retry.
func RejectedScenario() string {
	return scenario("rejected", response(200, "OK", "Expires: [$expires]")+
		notify("terminated;reason=rejected", false)+
		`<recv response="200" next="end"/>`)
}

// IntervalTooBriefScenario answers the first SUBSCRIBE 423 Interval Too
// Brief with Min-Expires: minExpires, or with no Min-Expires when it is 0.
func IntervalTooBriefScenario(minExpires int) string {
	extra := ""
	if minExpires > 0 {
		extra = fmt.Sprintf("Min-Expires: %d", minExpires)
	}
	return scenario("423", responseNext(423, "Interval Too Brief", extra, "subscribe"))
}

// FailureScenario answers the first SUBSCRIBE with a final failure such as
// 403 Forbidden or 404 Not Found.
func FailureScenario(code int, reason string) string {
	return scenario(fmt.Sprintf("failure %d", code), responseNext(code, reason, "", "subscribe"))
}

// scenario wraps the fault (XML commands run for the first SUBSCRIBE) in the
// common frame. Labels: subscribe (wait for a SUBSCRIBE), serve, fault, end.
//
// sipp details that matter: CDATA lines are trimmed and sent with CRLF;
// [len] is the body length; [cseq] increases with each request sent in a
// call; a variable used only once is an error, hence each ereg feeds a
// message.
func scenario(name, fault string) string {
	return `<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="siptest presence server: ` + name + `">
<Global variables="n"/>
<label id="subscribe"/>
<recv request="SUBSCRIBE">
  <action>
    <ereg regexp="sips?:[^&gt;;]*" search_in="hdr" header="To:" check_it="true" assign_to="entity"/>
    <ereg regexp=".*" search_in="hdr" header="From:" check_it="true" assign_to="from"/>
    <ereg regexp="sips?:[^&gt;]*" search_in="hdr" header="Contact:" check_it="true" assign_to="contact"/>
    <ereg regexp="[0-9]+" search_in="hdr" header="Expires:" check_it="true" assign_to="expires"/>
    <todouble assign_to="expiresn" variable="expires"/>
    <test assign_to="ending" variable="expiresn" compare="equal" value="0"/>
    <add assign_to="n" value="1"/>
    <test assign_to="first" variable="n" compare="equal" value="1"/>
  </action>
</recv>
<nop next="fault" test="first"/>
<label id="serve"/>
` + response(200, "OK", "Expires: [$expires]") + `<nop next="unsubscribed" test="ending"/>
` + notify("active;expires=[$expires]", true) + `<recv response="200" next="subscribe"/>
<label id="unsubscribed"/>
` + notify("terminated;reason=timeout", false) + `<recv response="200" next="end"/>
<label id="fault"/>
` + fault + `
<label id="end"/>
<nop><action><log message="call ended"/></action></nop>
</scenario>
`
}

// accept answers a SUBSCRIBE with 200 and NOTIFY active, as serve does.
var accept = response(200, "OK", "Expires: [$expires]") +
	notify("active;expires=[$expires]", true) + `<recv response="200"/>` + "\n"

// response answers the last SUBSCRIBE. The To tag is made from the call
// number so that it stays the same in a dialog; the To header is rebuilt
// from the URI because a refresh's To already carries the tag.
func response(code int, reason, extra string) string {
	return responseNext(code, reason, extra, "")
}

// responseNext is response followed by a jump to the label next.
func responseNext(code int, reason, extra, next string) string {
	lines := []string{
		fmt.Sprintf("SIP/2.0 %d %s", code, reason),
		"[last_Via:]",
		"[last_From:]",
		"To: <[$entity]>;tag=[pid]SIPpTag[call_number]",
		"[last_Call-ID:]",
		"[last_CSeq:]",
		"Contact: <sip:[local_ip]:[local_port];transport=[transport]>",
	}
	if extra != "" {
		lines = append(lines, extra)
	}
	lines = append(lines, "Content-Length: 0")
	attr := ""
	if next != "" {
		attr = ` next="` + next + `"`
	}
	return "<send" + attr + "><![CDATA[\n" + strings.Join(lines, "\n") + "\n\n]]></send>\n"
}

// notify sends a NOTIFY in the dialog of the last SUBSCRIBE: to its Contact
// (over UDP sipp sends it to the address the SUBSCRIBE came from, over TCP
// on its connection), From/To swapped with both tags, with an open PIDF when
// withBody is set.
func notify(state string, withBody bool) string {
	lines := []string{
		"NOTIFY [$contact] SIP/2.0",
		"Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]",
		"From: <[$entity]>;tag=[pid]SIPpTag[call_number]",
		"To: [$from]",
		"Call-ID: [call_id]",
		"CSeq: [cseq] NOTIFY",
		"Contact: <sip:[local_ip]:[local_port];transport=[transport]>",
		"Max-Forwards: 70",
		"Event: presence",
		"Subscription-State: " + state,
	}
	body := ""
	if withBody {
		lines = append(lines, "Content-Type: application/pidf+xml")
		body = `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
			`<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="[$entity]"><tuple id="sipp"><status><basic>open</basic></status></tuple></presence>`
	}
	lines = append(lines, "Content-Length: [len]", "", body)
	return "<send><![CDATA[\n" + strings.Join(lines, "\n") + "\n]]></send>\n"
}
