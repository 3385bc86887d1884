# The examples quoted in the README; reference_test.go checks every
# decision described in the comments below.

# Every rule inherits these unless it sets its own.
defaults {
  user    = "nobody"
  memory  = "256MiB"
  cpu     = 1.0      # cores
  pids    = 128
  timeout = "30m"    # the longest a task may ask for; no timeout asked = this one
  network = false
  env     = { LANG = "C.UTF-8" }
}

# install.sh feature/homestead        -> allowed, as root, 1GiB, with network
# install.sh 'x;rm'                    -> refused: argument 1 must match the pattern
# install.sh feature/a feature/b       -> refused: the rule allows 1 argument
rule "install" {
  description = "install a feature branch"
  cmdline = "install.sh"                   # the cmdline's words must equal this
  args    = ["^feature/[A-Za-z0-9._/-]+$"] # one regexp per cmd_args position; count must match
  user    = "root"
  memory  = "1GiB"
  network = true
}

# deploy.sh prod v1.2.3 signed by "ci" -> allowed, timeout capped at 1h
# the same, unsigned or signed by "web" -> refused: only for keys ["ci"]
rule "deploy-prod" {
  description = "deploy a release to production (CI only)"
  cmdline = "deploy.sh prod"
  args    = ["v[0-9]+\\.[0-9]+\\.[0-9]+"]   # anchors are implied: the whole argument must match
  keys    = ["ci"]
  timeout = "1h"
  env     = { DEPLOY_ENV = "prod" }
}

# report.sh 2026-01-31 sales marketing -> allowed: one date, then any number of names
rule "report" {
  cmdline   = "report.sh"
  args      = ["[0-9]{4}-[0-9]{2}-[0-9]{2}"]
  args_rest = "[a-z]+"
  memory    = "500MB"                       # decimal: 500 * 10^6 bytes
}

# cleanup.sh with no arguments          -> allowed, with the defaults
rule "cleanup" {
  cmdline = "cleanup.sh"
}
