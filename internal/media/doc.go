// Package media is the content repository: uploads (plain and async),
// authenticated and legacy downloads, thumbnails and URL previews.
//
// Content is stored once per distinct file under <data>/media as age files
// encrypted to the identity the node keeps in <data>/media.age; the key in
// <data>/media.key names the files and reads those stored before the node
// used age (see crypt.go and legacy.go for the formats).
// Downloads carry headers that keep uploaded HTML or SVG from running on
// the server's origin. URL previews fetch through netguard, so they never
// reach the node's own network unless the config allows a range.
//
// With federation on, the node serves its own media to other servers
// (GET /_matrix/federation/v1/media/download and thumbnail, multipart/mixed
// as spec v1.11 says), and fetches other servers' media once, when a client
// first asks for it, keeping it in the store beside local media (see
// remote.go).
package media
