package keys

// DeviceLists is deviceLists, for the package's external tests.
var DeviceLists = (*Service).deviceLists
