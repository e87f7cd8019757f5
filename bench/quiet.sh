#!/bin/bash
# Run "$@" with the long jobs listed in /work/notes/longjobs.pids stopped (SIGSTOP), and continue
# them (SIGCONT) from an exit trap, whatever happens. Run it under the bench lock, briefly:
#     flock /work/bench.lock bench/quiet.sh .venv/bin/python bench/ratings.py ...
PIDS=$(cat /work/notes/longjobs.pids 2>/dev/null)
cont() { for p in $PIDS; do kill -CONT "$p" 2>/dev/null; done; }
trap cont EXIT INT TERM
for p in $PIDS; do kill -STOP "$p" 2>/dev/null; done
sleep 2
uptime
"$@"
uptime
