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
package media
