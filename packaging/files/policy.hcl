# task-job policy on this host. Installed by the task-job package as a
# conffile: your edits are kept on upgrade.
#
# Deny by default: a task runs only if a rule below allows it. Rules are
# tried top to bottom and the first that allows a task wins. A rule allows
# a cmdline (a script in cmd_dir, /var/lib/task-job/cmd) and, per argument,
# a regexp the whole argument must match.
#
# Check a change, then apply it without a restart:
#   task-job policy check /etc/task-job/policy.hcl
#   task-job policy check -v /etc/task-job/policy.hcl task.json   # dry run
#   systemctl reload task-job

defaults {
  user    = "nobody"
  memory  = "256MiB"
  cpu     = 1.0
  pids    = 128
  timeout = "30m"   # a cap: tasks asking for more run with this
  network = false
}

# Runs only once someone installs /var/lib/task-job/cmd/hello.sh; no
# arguments allowed.
rule "hello" {
  description = "the example job: hello.sh"
  cmdline     = "hello.sh"
}

# Examples to adapt; each stays off until uncommented.
#
# rule "report" {
#   description = "report.sh YYYY-MM-DD [NAME...]"
#   cmdline     = "report.sh"
#   args        = ["[0-9]{4}-[0-9]{2}-[0-9]{2}"]
#   args_rest   = "[a-z]+"
# }
#
# Only the container holding signing key "ci" may deploy, with network.
# rule "deploy" {
#   cmdline = "deploy.sh"
#   args    = ["staging|production", "v[0-9]+\\.[0-9]+\\.[0-9]+"]
#   keys    = ["ci"]
#   network = true
#   timeout = "1h"
# }
