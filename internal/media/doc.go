// Package media is the content repository: uploads (plain and async),
// authenticated and legacy downloads, thumbnails and URL previews.
//
// Content is stored once per distinct file under <data>/media, sealed with
// a key the node keeps in <data>/media.key (see crypt.go for the format).
// Downloads carry headers that keep uploaded HTML or SVG from running on
// the server's origin. URL previews fetch through netguard, so they never
// reach the node's own network unless the config allows a range.
package media
