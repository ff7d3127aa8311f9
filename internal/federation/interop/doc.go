// Package interop runs Matrix OS against another Matrix implementation:
// Dendrite (see testnode.StartDendrite) on loopback, federating with
// Matrix OS test nodes through a test CA. It holds only tests; they skip
// when no Dendrite binary is found, unless MATRIXOS_REQUIRE_DENDRITE=1.
package interop
