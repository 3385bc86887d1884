// Command probe shows what a task can and cannot do inside the sandbox.
//
//	probe -run [-init path]   (as root) run itself in the real sandbox, as
//	                          nobody and as root, and print the table
//	probe                     (inside) print its findings, one per line
//
// `make audit-sandbox` builds it and runs it with -run. The expected table
// is sandbox/testdata/audit-sandbox.md, which the README quotes; a test
// compares the live table with it, so a change in what the sandbox allows
// shows as a diff to review.
package main

func main() { run() }
