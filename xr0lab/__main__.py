import sys

from xr0lab.cli import main

sys.exit(main())
