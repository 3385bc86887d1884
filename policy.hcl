# task-job policy: once the executor is configured with this file,
# a task runs only if a rule below allows it. Rules are tried top to bottom
# and the first that allows a task wins, like a firewall.
#
# Check it, and dry-run a task against it, with:
#   task-job policy check policy.hcl
#   task-job policy check policy.hcl task.json
#
# Every attribute is described in the documentation of package policy
# (go doc github.com/taskjob/task-job/policy).

# What a rule gets unless it says otherwise. Keep these tight: a rule that
# needs more asks for it, in plain sight.
defaults {
  user    = "nobody"  # a name or a numeric uid; resolved when the task starts
  memory  = "256MiB"  # KiB/MiB/GiB/TiB are powers of 1024; KB/MB/GB/TB of 1000
  cpu     = 1.0       # cores
  pids    = 128       # processes and threads at once
  timeout = "30m"     # a cap: tasks asking for more are lowered to it
  network = false     # no network unless a rule allows it
  env     = { LANG = "C.UTF-8" }
}

# The job the original deployment ran: install a feature branch. It fetches
# from the network and installs packages, so it runs as root.
rule "install" {
  description = "install a feature branch (install.sh feature/NAME)"
  cmdline     = "install.sh"
  # One regexp per argument; each must match the whole argument. In HCL
  # strings a regexp's backslash is written twice ("\\d").
  args    = ["feature/[A-Za-z0-9._/-]+"]
  user    = "root"
  memory  = "1GiB"
  timeout = "1h"
  network = true
}

# Run the test suite with optional test names after the package.
rule "tests" {
  description = "run tests: run-tests.sh PACKAGE [TEST...]"
  cmdline     = "run-tests.sh"
  args        = ["[a-z][a-z0-9_/-]*"]
  args_rest   = "Test[A-Za-z0-9_]*"
  cpu         = 2
  pids        = 512
}

# Only the CI container, signing with key "ci", may deploy.
rule "deploy" {
  description = "deploy a tagged release (CI only)"
  cmdline     = "deploy.sh"
  args        = ["staging|production", "v[0-9]+\\.[0-9]+\\.[0-9]+"]
  keys        = ["ci"]
  network     = true
  env         = { DEPLOY_NOTIFY = "1" }
}
