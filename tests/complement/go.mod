// This go.mod only fences tests/complement off from the root module: the runner
// imports Complement, which is not a dependency of Matrix OS. run.sh copies
// matrixosrunner into a Complement checkout and builds it there.
module github.com/matrixos/matrixos/tests/complement

go 1.26
