"""supervisord event listener: when a program enters FATAL (supervisord gave up starting it),
note the program's name in $SUPERVISORD_FATAL_FILE and stop supervisord (SIGTERM, a clean
shutdown). start.sh, supervisord's parent, then exits non-zero with one line naming it.

It exits quietly when supervisord is gone. stdout is the event protocol's channel
(supervisor.childutils); messages go to stderr.
"""

import os
import signal
import sys
from pathlib import Path

from supervisor import childutils


def main():
    fatal_file = Path(os.environ["SUPERVISORD_FATAL_FILE"])
    while True:
        childutils.listener.ready(sys.stdout)
        line = sys.stdin.readline()
        if not line:  # supervisord is gone (start.sh kills it when the start-up fails)
            return
        headers = childutils.get_headers(line)
        payload = sys.stdin.read(int(headers["len"]))
        if headers["eventname"] == "PROCESS_STATE_FATAL":
            fields, _ = childutils.eventdata(payload + "\n")
            fatal_file.write_text(fields["processname"])
            print(f"exit_on_fatal: {fields['processname']} is FATAL: stopping", file=sys.stderr)
            os.kill(os.getppid(), signal.SIGTERM)
        childutils.listener.ok(sys.stdout)


if __name__ == "__main__":
    main()
