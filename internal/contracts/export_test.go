package contracts

// MaxSendFailures is maxSendFailures, for the external tests.
const MaxSendFailures = maxSendFailures
