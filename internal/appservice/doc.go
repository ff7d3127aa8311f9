// Package appservice owns application services (the Application Service
// API): their registrations, loaded from <data>/appservices/*.yaml at
// start-up and again on SIGHUP or `matrixos appservice reload`; their
// tokens and namespaces (exclusive user and alias namespaces are refused to
// everyone else); the endpoints only appservices call; and the delivery of
// transactions to them. internal/node wires it.
//
// Outbound requests to an appservice's url go wherever the registration
// says, loopback and private addresses included: the administrator who put
// the file in place chose that address. They are bounded by timeouts and
// response size limits.
package appservice
