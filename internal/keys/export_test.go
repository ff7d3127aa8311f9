package keys

// DeviceLists is deviceLists, for the package's external tests.
var DeviceLists = (*Service).deviceLists

// WrapFederationClient replaces the client the service reaches other
// servers with by wrap's answer, for the package's external tests; call it
// before the service reaches out.
func (s *Service) WrapFederationClient(wrap func(FederationClient) FederationClient) {
	s.fed = wrap(s.fed)
}
