"""One sentence for the person at the terminal instead of a traceback wall."""

import functools
import sys


class UserError(Exception):
    """A problem the user can fix (a missing file, an unknown size...). Its message is the whole report."""


def friendly_main(main):
    """Run `main`, turning UserError (and a few well-known failures) into one line on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except KeyboardInterrupt:
            print("error: interrupted.", file=sys.stderr)
            sys.exit(130)

    return wrapper
