package config

import (
	"github.com/rs/zerolog"
)

// MarshalZerologObject writes every parameter, under the names of Config.xml,
// for the configuration line operators look for at start.
func (p Provider) MarshalZerologObject(e *zerolog.Event) {
	e.Int("MaxFailedPresenceSubscriptionsPerUri", p.MaxFailuresPerURI).
		Int("FailedPresenceSubscriptionsResubscribeDelay", int(p.FailedResubscribeDelay.Seconds())).
		Int("MaxFailedPresenceSubscriptionsResubscribeDelay", int(p.MaxFailedResubscribeDelay.Seconds())).
		Int("MaxPresenceSubscriptionsPerSecond", p.MaxSubscriptionsPerSecond)

	sip := zerolog.Dict().Bool("enabled", p.SIP.Enabled).
		Str("ApplicationId", p.SIP.ApplicationID).
		Str("Transport", p.SIP.Transport).
		Str("Listen", p.SIP.Listen).
		Str("TlsCAFile", p.SIP.TLSCAFile).Str("TlsCertFile", p.SIP.TLSCertFile).
		Str("TlsKeyFile", p.SIP.TLSKeyFile).Str("TlsServerName", p.SIP.TLSServerName).
		Int("subscriptionExpires", int(p.SIP.SubscriptionExpires.Seconds()))
	apps := zerolog.Arr()
	if p.SIP.Application.URI != "" {
		apps.Dict(endpointDict(p.SIP.Application))
	}
	users := zerolog.Arr()
	if p.SIP.User != nil {
		users.Dict(endpointDict(*p.SIP.User))
	}
	e.Dict("UcmaPresenceSource", sip.Array("ApplicationEndpoints", apps).Array("UserEndpoints", users))

	e.Dict("PstnPresenceSource", zerolog.Dict().Bool("enabled", p.PSTN.Enabled).
		Int("maxCallDuration", int(p.PSTN.MaxCallDuration.Seconds())))

	patterns := zerolog.Arr()
	for _, re := range p.Attendant.Patterns {
		patterns.Str(re.String())
	}
	e.Dict("AttendantServiceSource", zerolog.Dict().Bool("enabled", p.Attendant.Enabled).Array("Match", patterns))

	accounts := zerolog.Arr()
	for _, a := range p.Graph.Accounts {
		// The secret's variable name is safe to show; its value is never read here.
		accounts.Dict(zerolog.Dict().Str("Id", a.ID).Str("TenantId", a.TenantID).Str("ClientId", a.ClientID).
			Str("ClientSecretEnv", a.ClientSecretEnv).Str("CertificateFile", a.CertificateFile))
	}
	e.Dict("MsGraphPresenceSource", zerolog.Dict().Bool("enabled", p.Graph.Enabled).
		Int("requestsPer30Seconds", p.Graph.RequestsPer30s).Int("budgetPercent", p.Graph.BudgetPercent).
		Int("minCycleSeconds", int(p.Graph.MinCycle.Seconds())).
		Array("Accounts", accounts))
}

func endpointDict(ep Endpoint) *zerolog.Event {
	return zerolog.Dict().Str("uri", ep.URI).Str("PoolFqdn", ep.PoolFQDN).Bool("Register", ep.Register)
}

// MarshalZerologObject gives a warning's parts as fields beside its line.
func (w Warning) MarshalZerologObject(e *zerolog.Event) {
	e.Str("element", w.Element)
	if w.Attribute != "" {
		e.Str("attribute", w.Attribute)
	}
	if w.Suggestion != "" {
		e.Str("did_you_mean", w.Suggestion)
	}
}
