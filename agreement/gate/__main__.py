"""``python -m agreement.gate``: see agreement/gate/command.py."""

import sys

from agreement.gate.command import main

sys.exit(main())
