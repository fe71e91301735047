import sys

from wacrypto.tools.cli import main

sys.exit(main())
