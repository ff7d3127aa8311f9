module github.com/mattn/go-sqlite3

go 1.26

require github.com/ncruces/go-sqlite3 v0.37.0
