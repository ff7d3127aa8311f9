package clientapi

import "maunium.net/go/mautrix/event"

func stateType(t string) event.Type { return event.Type{Type: t, Class: event.StateEventType} }
