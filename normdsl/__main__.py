import sys

from normdsl.cli import main

sys.exit(main())
