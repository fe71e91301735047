import sys

from wacrypto.cli import main

sys.exit(main())
