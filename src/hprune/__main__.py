import sys

from hprune.cli import main

sys.exit(main())
