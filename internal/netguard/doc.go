// Package netguard makes outbound HTTP requests safe to aim at addresses
// that users choose (URL previews, push gateways, federation): it resolves
// names itself, refuses loopback, private, link-local, multicast, cloud
// metadata and other special-purpose addresses unless an allow-list names
// them, and dials only the addresses it vetted, so DNS rebinding and
// redirects cannot reach the node's own network.
package netguard
