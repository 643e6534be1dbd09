package graph

import (
	"time"

	"github.com/contactcenter/presence-provider/schemas"
)

// availabilities maps Graph's availability to ours (docs/contract.md, Presence).
var availabilities = map[string]schemas.Availability{
	"Available":       schemas.Available,
	"AvailableIdle":   schemas.AvailableIdle,
	"Away":            schemas.Away,
	"BeRightBack":     schemas.BeRightBack,
	"Busy":            schemas.Busy,
	"BusyIdle":        schemas.BusyIdle,
	"DoNotDisturb":    schemas.DoNotDisturb,
	"Offline":         schemas.Offline,
	"PresenceUnknown": schemas.Unknown,
}

// activityTokens maps Graph's activity to the MS-PRES activity token UCCs
// know; the activities that only repeat the availability have none.
var activityTokens = map[string]string{
	"InACall":                 "on-the-phone",
	"InAConferenceCall":       "in-a-conference",
	"InAMeeting":              "in-a-meeting",
	"Presenting":              "in-a-conference",
	"OutOfOffice":             "out-of-office",
	"OffWork":                 "off-work",
	"UrgentInterruptionsOnly": "urgent-interruptions-only",
}

// toPresence maps one Graph presence; an availability Graph adds later is
// Unknown rather than an error.
func toPresence(g graphPresence, now time.Time) schemas.Presence {
	a, ok := availabilities[g.Availability]
	if !ok {
		a = schemas.Unknown
	}
	on := a != schemas.Offline && a != schemas.Unknown
	return schemas.Presence{
		Availability:      a,
		AvailabilityValue: a.Value(),
		Activity:          activityTokens[g.Activity],
		SourceNetwork:     "SameEnterprise",
		Modalities:        schemas.Modalities{Audio: on, Video: on, Text: on},
		Source:            schemas.SourceGraph,
		ObservedAt:        now.UTC(),
	}
}
