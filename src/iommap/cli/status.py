"""The exit statuses of every command, and the text ``--help`` gives of them."""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
# Stopped by SIGTERM, as a shell reports a process it killed (128 + 15).
EXIT_TERMINATED = 128 + signal.SIGTERM
# What a shell reports for a C tool killed by SIGPIPE (128 + 13).
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

EXIT_STATUS_HELP = """\
exit status:
  0    every file was processed
  1    some file could not be (missing, permission denied, ...), or the
       output could not be written; the other files were still processed,
       except by lock, which locks all or none
  2    bad usage
  130  interrupted (Ctrl-C); what was done so far is printed first
  141  the reader of the output went away (a closed pipe)
  143  stopped by SIGTERM; what was done so far is printed first"""
