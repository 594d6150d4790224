"""Maintainer commands built on the stages: series import, check-series, rebase, port-diff, bisect, matrix, shell/exec, junit-summary."""
