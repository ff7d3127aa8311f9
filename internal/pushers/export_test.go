package pushers

// Outcome is one step of one delivery, for the tests.
type Outcome = outcome

// The steps, for the tests.
const (
	StepQueued   = stepQueued
	StepDropped  = stepDropped
	StepSkipped  = stepSkipped
	StepSent     = stepSent
	StepRejected = stepRejected
	StepFailed   = stepFailed
)

// Observe makes f hear of every delivery step of s from now on; f must
// not block.
func Observe(s *Service, f func(Outcome)) { s.observe.Store(&f) }

// Step is the type of an Outcome's Step, for the tests.
type Step = step
